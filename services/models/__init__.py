"""ModelService: model versions, the catalogue and the public parameters clients encrypt for."""
