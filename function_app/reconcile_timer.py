"""Timer trigger: finish pipeline runs whose completion event never arrived (schedule: RECONCILE_SCHEDULE)."""

import azure.functions as func

from shared.bootstrap import services
from shared.services.reconcile import reconcile_runs

bp = func.Blueprint()


@bp.function_name("reconcile_timer")
@bp.timer_trigger(arg_name="timer", schedule="%RECONCILE_SCHEDULE%", run_on_startup=False, use_monitor=True)
def reconcile_timer(timer: func.TimerRequest) -> None:
    s = services()
    reconcile_runs(runs=s.runs, pipeline=s.pipeline, models=s.models, deployer=s.deployer, scorer=s.scorer,
                   datasets=s.datasets, audit=s.audit, limits=s.reconcile, policy=s.policy, past_due=timer.past_due)
