"""The pipeline panel of the Project page, computed without streamlit: each step's state, what is left
to run, and the jobs that run it.

A step is one job kind (``wsseg.jobs.launch``) and the runs it records. Its state:

- **running**: a job of its kind is active (its progress and message shown), or its newest run is
  still running without one (started from a shell);
- **failed**: its newest job ended failed or stopped after its newest run began (the job's message),
  or its newest run did;
- **not run**: no run yet;
- **out of date**: its newest run is done, but a step it read from has a newer finished run than the
  one it used (read from the run's stored config: ``classifier_run``, ``peaks_run``,
  ``proposals_run``, ``pseudo_masks_run``, ``model_run``, or for older runs the run of the name it
  names that had finished when it began), or images were added after it began;
- **done** otherwise.

The jobs come in as records of ``wsseg.jobs.table`` (this layer does not read that table itself):
anything with ``id``, ``kind``, ``status``, ``active``, ``progress``, ``message``, ``run_id``,
``created_at`` and ``args``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from wsseg.stages.common import next_run_name
from wsseg.stages.project_recipe import project_recipe
from wsseg.store.project import Project, RunRecord


class JobLike(Protocol):
    id: int
    kind: str
    status: str
    progress: float
    message: str
    run_id: int | None
    created_at: float
    args: dict[str, Any]

    @property
    def active(self) -> bool: ...


@dataclass(frozen=True)
class Step:
    """One pipeline step: its job kind, title, the run stage it records and the steps it reads."""

    kind: str
    title: str
    stage: str
    upstream: tuple[str, ...] = ()


STEPS: tuple[Step, ...] = (
    Step("classifier", "Classifier", "classifier"),
    Step("peaks", "Peaks and PRMs", "peaks", ("classifier",)),
    Step("proposals", "Proposals", "proposals"),
    Step("pseudo_masks", "Pseudo masks", "pseudo_masks", ("peaks", "proposals")),
    Step("maskrcnn", "Mask R-CNN", "maskrcnn", ("pseudo_masks", "classifier")),
    Step("ple", "Pixel-label estimator", "ple", ("classifier",)),
    Step("evaluate", "Evaluation", "evaluate", ("maskrcnn",)),
)
BY_KIND = {step.kind: step for step in STEPS}
STATES = ("not run", "running", "done", "failed", "out of date")
#: The config key of a run that names the run of an upstream step it read: (step, upstream) -> key.
RUN_KEYS = {
    ("peaks", "classifier"): "classifier_run",
    ("pseudo_masks", "peaks"): "peaks_run",
    ("pseudo_masks", "proposals"): "proposals_run",
    ("maskrcnn", "pseudo_masks"): "pseudo_masks_run",
    ("evaluate", "maskrcnn"): "model_run",
}
#: The config key naming the upstream run by its name, for runs that did not store its id.
NAME_KEYS = {
    ("peaks", "classifier"): "classifier",
    ("maskrcnn", "classifier"): "init",
    ("ple", "classifier"): "init",
    ("evaluate", "maskrcnn"): "model",
}


@dataclass(frozen=True)
class StepState:
    """A step's state (one of ``STATES``). ``run``: its newest run (None: never ran); ``job``: its
    newest job; ``progress`` in [0, 1] while a job runs it (else None); ``message``: the job's progress
    or error message, or why the step is out of date."""

    step: Step
    state: str
    run: RunRecord | None
    job: JobLike | None
    progress: float | None
    message: str


def consumed(runs: Mapping[str, list[RunRecord]], step: str, run: RunRecord, upstream: str) -> int | None:
    """The id of the ``upstream`` step's run that ``run`` (of ``step``) read; None when it read none
    (a Mask R-CNN on the ground truth, an estimator started from scratch) or it cannot be told."""
    key = RUN_KEYS.get((step, upstream))
    if key is not None and key in run.config:
        return run.config[key]
    name_key = NAME_KEYS.get((step, upstream))
    name = run.config.get(name_key) if name_key else None
    if name is None:
        return None
    before = [
        r
        for r in runs.get(BY_KIND[upstream].stage, [])
        if r.status == "done" and r.config.get("name") == name and (r.finished_at or 0) <= run.started_at
    ]
    return before[0].id if before else None


def _newest_done(runs: Mapping[str, list[RunRecord]], stage: str) -> RunRecord | None:
    return next((r for r in runs.get(stage, []) if r.status == "done"), None)


def _stale(
    runs: Mapping[str, list[RunRecord]], step: Step, run: RunRecord, images_added: float | None
) -> str:
    """Why ``run`` (done, the step's newest) is out of date; empty when it is not."""
    for upstream in step.upstream:
        used = consumed(runs, step.kind, run, upstream)
        newest = _newest_done(runs, BY_KIND[upstream].stage)
        if used is not None and newest is not None and newest.id > used:
            return (
                f"{BY_KIND[upstream].title.lower()} has a newer run ({newest.id}) than the one "
                f"run {run.id} used ({used})"
            )
    if images_added is not None and images_added > run.started_at:
        return f"images were added after run {run.id} began"
    return ""


def newest_image_time(project: Project) -> float | None:
    """When the project's newest image was added (UNIX seconds; None without images)."""
    with project.reading() as conn:
        return conn.execute("SELECT MAX(added_at) FROM images").fetchone()[0]


def pipeline_state(project: Project, jobs: Sequence[JobLike]) -> list[StepState]:
    """The state of every step of ``STEPS``, in order (see the module docstring)."""
    runs: dict[str, list[RunRecord]] = {}
    for run in project.runs():  # newest first
        runs.setdefault(run.stage, []).append(run)
    images_added = newest_image_time(project)
    states = []
    for step in STEPS:
        mine = sorted((j for j in jobs if j.kind == step.kind), key=lambda j: j.id, reverse=True)
        job = mine[0] if mine else None
        stage_runs = runs.get(step.stage, [])
        run = stage_runs[0] if stage_runs else None
        if job is not None and job.active:
            state = StepState(step, "running", run, job, job.progress, job.message or "starting")
        elif (
            job is not None
            and job.status in ("failed", "stopped")
            and (run is None or job.created_at >= run.started_at or job.run_id == run.id)
        ):
            state = StepState(step, "failed", run, job, None, f"job {job.id} {job.status}: {job.message}")
        elif run is None:
            state = StepState(step, "not run", None, job, None, "")
        elif run.status == "running":
            state = StepState(
                step, "running", run, job, None, f"run {run.id} is running (started outside the app)"
            )
        elif run.status != "done":
            state = StepState(step, "failed", run, job, None, f"run {run.id} {run.status}")
        else:
            reason = _stale(runs, step, run, images_added)
            state = StepState(step, "out of date" if reason else "done", run, job, None, reason)
        states.append(state)
    return states


def remaining(states: Sequence[StepState]) -> list[str]:
    """The kinds of the steps "Run every remaining step" runs, in order: those not run, failed or out
    of date, and every step after them that reads one of them (its result would be out of date)."""
    todo: list[str] = []
    for s in states:
        if s.state in ("not run", "failed", "out of date") or set(s.step.upstream) & set(todo):
            todo.append(s.step.kind)
    return todo


def busy(states: Sequence[StepState], jobs: Sequence[JobLike]) -> bool:
    """Whether a job runs a step, or a pipeline job runs: nothing new should start then."""
    return any(s.job is not None and s.job.active for s in states) or any(
        j.active and j.kind == "pipeline" for j in jobs
    )


def default_settings(project: Project) -> dict[str, dict[str, Any]]:
    """Every step's options for this project (``wsseg.stages.project_recipe.project_recipe``)."""
    return project_recipe(project.images(), has_val=project.count_images(split="val") > 0)


def _name_of(runs: list[RunRecord], fallback: str) -> str:
    done = [r for r in runs if r.status == "done" and r.config.get("name")]
    return str(done[0].config["name"]) if done else fallback


def plan(
    project: Project,
    kinds: Sequence[str],
    settings: Mapping[str, Mapping[str, Any]],
    jobs: Sequence[JobLike] = (),
) -> list[dict[str, Any]]:
    """The jobs that run the steps ``kinds`` (in ``STEPS`` order) with ``settings`` (step -> options,
    as ``default_settings``): [{"kind", "options"}, ...], ready for ``wsseg.jobs.launch``.

    Each training gets a new run name (``classifier``, else ``classifier-2``...); the steps after it
    read that run (peaks its classifier, evaluation its Mask R-CNN), or the newest finished run of a
    step that is not planned. Mask R-CNN and the estimator start from the classifier's layers when it
    has the small backbone (the only one they fit); Mask R-CNN learns the newest pseudo masks, the
    estimator also writes its label maps."""
    taken = [
        str(j.args.get("name")) for j in jobs if j.active and j.kind in ("classifier", "maskrcnn", "ple")
    ]
    names: dict[str, str] = {}
    for kind in ("classifier", "maskrcnn", "ple"):
        if kind in kinds:
            names[kind] = next_run_name(project, kind, taken)
            taken.append(names[kind])
        else:
            names[kind] = _name_of(project.runs(kind), kind)
    classifier = next((r for r in project.runs("classifier") if r.status == "done"), None)
    small = "classifier" in kinds or (
        classifier is not None and classifier.config.get("model", {}).get("backbone") == "small"
    )
    init = {"init": names["classifier"]} if small else {}
    extra: dict[str, dict[str, Any]] = {
        "classifier": {"name": names["classifier"]},
        "peaks": {"name": names["classifier"]},
        "maskrcnn": {"name": names["maskrcnn"], "source": "pseudo", **init},
        "ple": {"name": names["ple"], "predict": True, **init},
        "evaluate": {"stage": "maskrcnn", "name": names["maskrcnn"]},
    }
    steps = []
    for step in STEPS:
        if step.kind in kinds:
            options = {**settings.get(step.kind, {}), **extra.get(step.kind, {})}
            if step.kind == "maskrcnn" and not small:
                options["backbone"] = "mobilenet_v3"
            steps.append({"kind": step.kind, "options": options})
    return steps


def _number(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"


def result_summary(run: RunRecord | None) -> str:
    """One line on what a finished run of a step gave (empty for None)."""
    if run is None:
        return ""
    m, name = run.metrics, run.config.get("name")
    if run.stage in ("classifier", "maskrcnn", "ple") and "installed_from" in m:  # the shipped demo model
        return f"run {run.id} · {name} · installed from {m['installed_from']}"
    if run.stage in ("classifier", "maskrcnn", "ple"):
        loss = m.get("final_loss")
        shown = f" · final loss {_number(loss)}" if loss is not None else ""
        return f"run {run.id} · {name} · {m.get('epochs_done', '?')} epoch(s){shown}"
    if run.stage == "peaks":
        return f"run {run.id} · {m.get('peaks', '?')} peaks on {m.get('images', '?')} images"
    if run.stage == "proposals":
        return f"run {run.id} · {m.get('proposals', '?')} proposals on {m.get('images', '?')} images"
    if run.stage == "pseudo_masks":
        return f"run {run.id} · {m.get('masks', '?')} pseudo masks on {m.get('images', '?')} images"
    if run.stage == "evaluate":
        if m.get("against") == "tags":
            found = (
                f"precision {_number(m.get('tag_precision'), 2)}, recall {_number(m.get('tag_recall'), 2)}"
                if m.get("tag_precision") is not None
                else "no class found at its score threshold"
            )
            return f"run {run.id} · {run.config.get('model')} against the tags: {found} on {m.get('images', '?')} images"
        return f"run {run.id} · {run.config.get('model')}: mask mAP50 {_number(m.get('map50'))} on {m.get('images', '?')} images"
    return f"run {run.id}"
