"""The methods: peak response maps, proposals, pseudo masks, the pixel-label estimator, CRF, metrics."""
