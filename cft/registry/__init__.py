"""MLflow tracking, registration and the promotion gate, with lineage.

    tracking        tracking URI and experiment from params
    lineage         what a training run was made from (dvc.lock md5s, git, params) as `lineage.*` tags
    promotion       the gate's pure rule: the evaluation's register.metric vs champion + margin
    retrain         the retraining decision: the data training reads vs the registered versions' lineage
    manage          versions and aliases: register, gate, promote, rollback (under registry_lock)
    locking         one writer at a time per registered model (file lock / lock model on a server)
    pyfunc_model    the served model (models from code)
    checkpoint_ref  log_weights: reference: a pointer to the DVC-tracked checkpoint, resolved at load
"""
