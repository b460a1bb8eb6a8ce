"""`retrain promote VERSION` and `retrain rollback`: a person overrides the champion/challenger decision.

Both go through the same blue/green path as automatic deploys and end in an audit record naming who asked.
"""

from __future__ import annotations

import logging
import time

from shared.domain.outcomes import Outcome
from shared.domain.records import AuditRecord, new_id
from shared.ports import DeploymentError
from shared.services.on_run_completed import Deployment, deploy_version, smoke_records

log = logging.getLogger(__name__)


def promote(version: int, deployment: Deployment, requested_by: str = "cli") -> AuditRecord:
    models, audit = deployment.models, deployment.audit
    record = AuditRecord(id=new_id("cli-"), trigger="cli", function="promote", started_at=time.time(),
                         source=f"retrain promote {version} ({requested_by})", model_version=version)
    model = models.get(version)
    if model is None:
        known = ", ".join(str(m.version) for m in models.list()) or "none"
        return audit.finish(record, Outcome.FAILED, f"no registered model version {version} (registered: {known})")
    live = models.live()
    record.dataset_version = model.dataset_version
    record.data["replaced"] = live.version if live else None
    audit.save(record)
    try:
        result = deploy_version(model, deployment, samples=smoke_records(deployment.datasets, model.dataset_version),
                                record=record)
    except Exception as exc:
        log.exception("promote of v%s failed", version)
        return audit.finish(record, Outcome.FAILED, f"promote of v{version} failed: {exc}")
    if result["outcome"] != Outcome.DEPLOYED:
        return audit.finish(record, result["outcome"], result["detail"])
    return audit.finish(record, Outcome.PROMOTED, f"model v{version} promoted by hand"
                + (f", replacing v{live.version}" if live else ""))


def rollback(deployment: Deployment, requested_by: str = "cli") -> AuditRecord:
    """Back to the model that was live before the current one: instantly when the endpoint still holds it in its
    other slot, otherwise by deploying it again."""
    models, audit = deployment.models, deployment.audit
    record = AuditRecord(id=new_id("cli-"), trigger="cli", function="rollback", started_at=time.time(),
                         source=f"retrain rollback ({requested_by})")
    live, previous = models.live(), models.previous_live()
    if previous is None:
        return audit.finish(record, Outcome.FAILED, "nothing to roll back to: no model was live before "
                    + (f"v{live.version}" if live else "(no model is live)"))
    record.model_version, record.dataset_version = previous.version, previous.dataset_version
    record.data["replaced"] = live.version if live else None
    audit.save(record)
    try:
        answer = deployment.deployer.rollback(from_version=live.version if live else None)
        record.data["rollback"] = answer
        back_to = answer.get("rolled_back_to") or answer.get("deployed")  # local slot switch / Azure redeploy
        if str(back_to) == str(previous.version):
            record.stage("serving")
            models.set_live(previous.version)
            how = "instant switch" if answer.get("rolled_back_to") else "redeployed"
            return audit.finish(record, Outcome.ROLLED_BACK, f"v{previous.version} serving again ({how})")
        log.warning("endpoint rolled back to %s, registry says v%s: deploying v%s", back_to,
                    previous.version, previous.version)
    except DeploymentError as exc:
        record.data["rollback_error"] = str(exc)
    try:
        result = deploy_version(previous, deployment,
                                samples=smoke_records(deployment.datasets, previous.dataset_version), record=record)
    except Exception as exc:
        log.exception("rollback to v%s failed", previous.version)
        return audit.finish(record, Outcome.FAILED, f"rollback to v{previous.version} failed: {exc}")
    if result["outcome"] != Outcome.DEPLOYED:
        return audit.finish(record, Outcome.FAILED, result["detail"])
    return audit.finish(record, Outcome.ROLLED_BACK, f"v{previous.version} serving again (redeployed)")
