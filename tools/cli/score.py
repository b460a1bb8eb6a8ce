"""`retrain score --data FILE`: a labelled file's rows through the live scoring endpoint, and how right it was.

The file is read as an upload is (shared.domain.validation: every accepted dialect, gzip too) and its rows sent in
their stored form (shared.domain.validation.canonical_csv, read back as the training step and the deploy's smoke
test read a dataset version), in batches under the endpoint's limits, with the Azure ML no-code MLflow request
(shared/scoring/payloads.py) through the same client the completion handler checks a deploy with
(tools.cli.deploy.deployment: the local stack's endpoint, or the Azure online endpoint with RETRAIN_MODE=azure),
which names the model version that answered.

That endpoint answers one predicted label per row (0/1, shared/scoring/payloads.py), no probability, so `auc` is
the ROC AUC of the predicted labels: (true positive rate + true negative rate) / 2, not the ranking AUC of
`retrain evaluate`, which reads the model's probabilities from its folder.
"""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tools.cli.command import CommandError, Exit, add_command

MAX_ROWS = 10_000  # rows per request: the local endpoint's limit (local/scoring_server/formats.py MAX_RECORDS)
MAX_BODY_BYTES = 1_000_000  # bytes per request body: well under every scoring endpoint's request size limit


def labelled_frame(path: Path):
    """The file's rows as the service stores an upload (canonical columns and values), or CommandError (usage)
    naming what is wrong: not a file, malformed, no `y`, labels other than yes/no, a single class."""
    import pandas as pd

    from shared.domain.validation import canonical_csv, validate_file
    from tools.cli.context import settings

    if not path.is_file():
        raise CommandError(f"{path} is not a file", Exit.USAGE)
    try:  # MIN_ROWS is the upload's rule, not scoring's: any labelled rows of both classes can be scored
        result = validate_file(path, min_rows=1, max_bytes=settings().max_upload_bytes)
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}", Exit.USAGE) from None
    if not result.ok:
        raise CommandError(f"{path} cannot be scored: {result.reason()}", Exit.USAGE)
    return pd.read_csv(io.BytesIO(canonical_csv(result.frame)))


def batches(records: list[dict[str, Any]], *, max_rows: int = MAX_ROWS,
            max_bytes: int = MAX_BODY_BYTES) -> Iterator[list[dict[str, Any]]]:
    """`records` in consecutive batches of at most `max_rows` rows whose request body is at most `max_bytes`
    (a batch over it is cut to the share that fits, with a margin; a single row always goes)."""
    from shared.scoring.payloads import mlflow_request

    size, start = max_rows, 0
    while start < len(records):
        batch = records[start:start + size]
        body = len(json.dumps(mlflow_request(batch), separators=(",", ":")))
        if body > max_bytes and len(batch) > 1:
            size = max(1, min(len(batch) - 1, int(len(batch) * max_bytes / body * 0.9)))
            continue
        yield batch
        start += len(batch)


def _version(answer: dict[str, Any]) -> int | str | None:
    version = answer.get("model_version")
    return int(version) if isinstance(version, str) and version.isdigit() else version


def score_records(scorer, records: list[dict[str, Any]]) -> tuple[list[str], int | str | None]:
    """Every record's predicted label and the model version that answered them all."""
    from shared.domain import schema
    from shared.ports import DeploymentError

    labels: list[str] = []
    versions: list[Any] = []
    for batch in batches(records):
        try:
            answer = scorer.score(batch)
        except DeploymentError as exc:
            raise CommandError(str(exc)) from None
        result = list(answer.get("result") or [])
        wrong = next((p for p in result if p not in schema.TARGET_VALUES), None)
        if len(result) != len(batch) or wrong is not None:
            raise CommandError(f"the endpoint answered {len(result)} predictions for {len(batch)} rows"
                               + (f", one of them {wrong!r} (not {' or '.join(schema.TARGET_VALUES)})"
                                  if wrong is not None else ""))
        labels.extend(result)
        version = _version(answer)
        if versions and version != versions[-1]:
            raise CommandError(f"the live model changed while scoring (v{versions[-1]} answered the first rows, "
                               f"v{version} later ones); run it again")
        versions.append(version)
    return labels, versions[-1] if versions else None


def cmd_score(args: argparse.Namespace) -> int:
    from sklearn.metrics import roc_auc_score

    from shared.domain import schema
    from tools.cli.deploy import deployment

    frame = labelled_frame(Path(args.data))
    scorer = deployment().scorer
    if scorer is None:
        raise CommandError("no scoring endpoint is configured (SCORING_URL)")
    predicted, version = score_records(scorer, frame[list(schema.FEATURES)].to_dict(orient="records"))
    truth = [value == schema.POSITIVE for value in frame[schema.TARGET]]
    said = [value == schema.POSITIVE for value in predicted]
    # ROC AUC of 0/1 scores (ties count half): (true positive rate + true negative rate) / 2
    figures = {"rows": len(truth), "auc": round(float(roc_auc_score(truth, said)), 6),
               "accuracy": round(sum(t == p for t, p in zip(truth, said, strict=True)) / len(truth), 6),
               "model_version": version}
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"{figures['rows']:,} rows scored by the live model v{version if version is not None else '?'}: "
              f"AUC {figures['auc']:.4f} (of its predicted labels), accuracy {figures['accuracy']:.4f}")
    return Exit.OK


def add_parsers(sub: argparse._SubParsersAction) -> None:
    score = add_command(sub, "score", cmd_score,
                        help="score a labelled file through the live scoring endpoint: rows, AUC, accuracy, "
                             "model version")
    score.add_argument("--data", required=True,
                       help="labelled file (column y: yes/no) in any dialect an upload accepts, gzip too")
    score.add_argument("--json", action="store_true",
                       help='print one JSON object: {"rows", "auc", "accuracy", "model_version"}')
