"""Timer trigger: submit the pending retrain request when its coalescing window or retry delay has passed and
nothing is in flight (schedule: OUTBOX_SCHEDULE)."""

import logging

import azure.functions as func

from shared.bootstrap import services
from shared.services.dispatch import dispatch

bp = func.Blueprint()


@bp.function_name("outbox_timer")
@bp.timer_trigger(arg_name="timer", schedule="%OUTBOX_SCHEDULE%", run_on_startup=True, use_monitor=False)
def outbox_timer(timer: func.TimerRequest) -> None:
    outcome = dispatch(services().retrain)
    if outcome != "nothing due":
        logging.info("outbox: %s", outcome)
