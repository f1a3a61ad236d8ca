"""Demonstration datasets: collect, store, import, check and load episodes of video."""
