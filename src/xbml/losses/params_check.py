"""`loss.params` and `loss.miner_params` checked against the pytorch-metric-learning class they
are passed to, when the config is read: a misspelt name or `alpha: abc` is refused before
training starts, not at the first loss computation an hour later."""

from __future__ import annotations

import inspect
import math

from xbml.errors import ConfigError

_NUMBER = (int, float)


def accepted_parameters(factory: type) -> dict[str, inspect.Parameter]:
    """Keyword parameters a class's constructor takes, following `**kwargs` up its bases (pml
    losses pass them on to BaseMetricLossFunction, which takes `reducer`, `distance`, ...)."""
    out: dict[str, inspect.Parameter] = {}
    for cls in factory.__mro__:
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters
        for name, p in list(params.items())[1:]:  # skip self
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                out.setdefault(name, p)
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break
    return out


def _type_problem(value, default) -> str | None:
    if default is inspect.Parameter.empty or default is None:
        return None  # no default to compare with: the library decides
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(default, _NUMBER):
        ok = isinstance(value, _NUMBER) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok else "a finite number"
    if isinstance(default, str):
        return None if isinstance(value, str) else "a string"
    return None


def check_params(factory: type, params: dict, key: str, owner: str, supplied_by_xbml=()) -> None:
    accepted = accepted_parameters(factory)
    for name, value in params.items():
        if not isinstance(name, str) or name not in accepted or name in supplied_by_xbml:
            valid = ", ".join(sorted(n for n in accepted if n not in supplied_by_xbml))
            raise ConfigError(
                f"{key}: {str(name)[:60]!r} is not a parameter of {factory.__name__} ({owner}); valid: {valid}"
            )
        expected = _type_problem(value, accepted[name].default)
        if expected is not None:
            raise ConfigError(
                f"{key}.{name} is {repr(value)[:60]}; {factory.__name__} expects {expected} "
                f"(its default is {accepted[name].default!r})"
            )


def check_loss_config(loss_cfg: dict) -> None:
    """The loss's and the miner's parameters, by name and (where the default tells) by type.

    pytorch-metric-learning (and with it torch) is imported only where there are parameters to
    check: the workflow reads every run's config while it parses the DAG."""
    from xbml.losses.catalog import BASE_LOSSES, MINERS

    name = loss_cfg["name"]
    spec = BASE_LOSSES.get(name)
    reserved = ("num_classes", "embedding_size") if spec.needs_classes else ()
    if loss_cfg["params"]:
        check_params(spec.load(), loss_cfg["params"], "loss.params", f"loss.name={name}", reserved)
    miner = loss_cfg["miner"]
    if miner == "auto":
        miner = spec.default_miner
    if miner in (None, "none"):
        if loss_cfg["miner_params"]:
            raise ConfigError(
                f"loss.miner_params is given but no miner is used (loss.miner={loss_cfg['miner']}); set "
                "loss.miner (auto, or a miner's name) or drop loss.miner_params"
            )
    elif loss_cfg["miner_params"]:
        check_params(MINERS.get(miner).load(), loss_cfg["miner_params"], "loss.miner_params", f"loss.miner={miner}")
