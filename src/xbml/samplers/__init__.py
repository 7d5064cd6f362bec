from xbml.samplers.class_disjoint_halves_sampler import ClassDisjointHalvesSampler

__all__ = ["ClassDisjointHalvesSampler"]
