"""Datasets: every one ends as a prepared folder (manifest.csv + dataset.json) that later steps read."""
