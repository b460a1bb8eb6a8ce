"""Event Grid trigger: Azure ML run events (RunCompleted / RunStatusChanged) -> the run's rollout, queued.

Event Grid waits 30 s for an answer and then redelivers (https://learn.microsoft.com/azure/event-grid/
delivery-and-retry): a succeeded run is validated, confirmed, claimed and recorded here, and its registration and
rollout go to ROLLOUT_QUEUE (function_app/rollout_queue.py), so the delivery is answered in seconds.

The event's topic is checked against AZUREML_WORKSPACE_ID and a terminal status against the pipeline's run GET
(shared.services.on_run_completed); when the pipeline cannot be asked the invocation fails, so Event Grid
redelivers the event (and the reconcile timer catches the run otherwise)."""

import azure.functions as func

from shared.bootstrap import services
from shared.services.dispatch import dispatch
from shared.services.on_run_completed import DeliveredEvent, on_run_completed

bp = func.Blueprint()


@bp.function_name("run_completed")
@bp.event_grid_trigger(arg_name="event")
def run_completed(event: func.EventGridEvent) -> None:
    s = services()
    delivered = DeliveredEvent(id=event.id, event_type=event.event_type, subject=event.subject,
                               data=event.get_json(), topic=event.topic)
    on_run_completed(delivered, s.completion)
    dispatch(s.retrain)  # single flight: the request that waited for this run goes now
