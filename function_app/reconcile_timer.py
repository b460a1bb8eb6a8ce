"""Timer trigger: finish pipeline runs whose completion event never arrived, uploads whose delivery stopped
half-way or never wrote a record, and drift checks whose profiling job has ended (schedule: RECONCILE_SCHEDULE)."""

import azure.functions as func

from shared.bootstrap import services
from shared.services.check_drift import resume_drift_checks
from shared.services.on_upload import handle_unrecorded_uploads, resume_interrupted_uploads
from shared.services.reconcile import close_interrupted, reconcile_runs

bp = func.Blueprint()


@bp.function_name("reconcile_timer")
@bp.timer_trigger(arg_name="timer", schedule="%RECONCILE_SCHEDULE%", run_on_startup=False, use_monitor=True)
def reconcile_timer(timer: func.TimerRequest) -> None:
    s = services()
    reconcile_runs(s.completion, s.reconcile, past_due=timer.past_due)
    resume_interrupted_uploads(s.upload, older_than_s=s.reconcile.min_age_s)
    handle_unrecorded_uploads(s.upload, older_than_s=s.reconcile.min_age_s)
    close_interrupted(audit=s.audit, outbox=s.outbox)
    if s.drift.offload is not None:
        resume_drift_checks(s.drift)
