"""Timer trigger: the scheduled drift check (schedule from the DRIFT_SCHEDULE app setting)."""

import azure.functions as func

from shared.bootstrap import services
from shared.services.check_drift import check_drift
from shared.services.drift_on_demand import timer_check

bp = func.Blueprint()


@bp.function_name("drift_timer")
@bp.timer_trigger(arg_name="timer", schedule="%DRIFT_SCHEDULE%", run_on_startup=False, use_monitor=True)
def drift_timer(timer: func.TimerRequest) -> None:
    s = services()

    def run_check(record_id: str):
        return check_drift(s.drift, past_due=timer.past_due, record_id=record_id)

    # one check at a time: an on-demand check (POST /api/drift-check) holding the lease makes this run skip
    timer_check(s.drift_on_demand, run_check, past_due=timer.past_due)
