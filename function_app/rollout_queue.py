"""Queue triggers: a finished run's registration and blue/green rollout (shared.services.rollout), and the final
record of a rollout whose message exhausted its tries (`<ROLLOUT_QUEUE>-poison`).

A try that fails or runs past functionTimeout raises: the message is visible again after host.json
`extensions.queues.visibilityTimeout` and the next try resumes after the last recorded step; after
`maxDequeueCount` tries the extension moves it to `<queue>-poison`
(https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue-trigger#poison-messages)."""

import azure.functions as func

from shared.bootstrap import services
from shared.services.dispatch import dispatch
from shared.services.rollout import RolloutOrder, give_up, run_rollout

bp = func.Blueprint()


@bp.function_name("rollout_queue")
@bp.queue_trigger(arg_name="msg", queue_name="%ROLLOUT_QUEUE%", connection="AzureWebJobsStorage")
def rollout_queue(msg: func.QueueMessage) -> None:
    s = services()
    run_rollout(RolloutOrder.parse(msg.get_json()), s.completion, try_number=msg.dequeue_count or 1)
    dispatch(s.retrain)  # single flight: the request that waited for this run goes now


@bp.function_name("rollout_poison")
@bp.queue_trigger(arg_name="msg", queue_name="%ROLLOUT_QUEUE%-poison", connection="AzureWebJobsStorage")
def rollout_poison(msg: func.QueueMessage) -> None:
    s = services()
    give_up(RolloutOrder.parse(msg.get_json()), s.completion)
    dispatch(s.retrain)
