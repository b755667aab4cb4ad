"""YAML recipes -> validated Recipe objects; every error is found before anything runs.

A recipe::

    name: demo
    source: {coco: {captions: data/captions.json, images: data/images}}
    stages:
      - read_images: {keep_bytes: true}
      - image_size_filter: {min_side_px: 64, resources: {num_cpus: 1}}
    output: out/shards          # path or URI
    catalog: out/catalog.duckdb
    on_error: record            # raise | record
    shard_rows: 1000            # input rows per shard
    imports: [my_package.stages]  # optional: modules that register more stages

A *layer* recipe adds columns to a corpus without rewriting it: ``layer_of: <corpus>``
instead of ``source``, no ``shard_rows`` (the base's shards are the partitions), and
every stage declares the columns it adds (``Stage.layer_fields``); ``name`` names the
layer. Its rows are written one file per base shard, row for row (mmdata.engine.sink).

Relative paths resolve against the recipe file's folder; ``${VAR}`` expands from the
environment (or the variables given to ``load``), and an undefined one is an error.

A shared deployment can pin where recipes may write: with ``MMDATA_OUTPUT_ROOT`` set (one
or more paths or URI prefixes, separated by commas), an ``output`` or ``catalog``
that resolves outside all of them (``..``, symlinks followed) is a problem of the recipe.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml

from mmdata.core.args import check_args, resolve_path
from mmdata.core.errors import MmdataError
from mmdata.core.registry import SOURCES, STAGES, UnknownNameError, import_modules, load_builtin
from mmdata.core.schema import IMAGE_SCHEMA, INTERNAL_FIELDS, layer_schema
from mmdata.core.stage import OnError, Resources, Source, Stage

TOP_KEYS = {
    "name", "source", "layer_of", "stages", "output", "catalog", "on_error", "shard_rows",
    "imports",
}  # fmt: skip
REQUIRED_KEYS = ("name", "output", "catalog")  # and exactly one of source, layer_of
ON_ERROR = tuple(e.value for e in OnError)
OUTPUT_ROOT_ENV = "MMDATA_OUTPUT_ROOT"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
DEFAULT_SHARD_ROWS = 1000


class RecipeError(MmdataError, ValueError):
    """A recipe that cannot run; ``problems`` lists every error found."""

    def __init__(self, where: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            f"{where}: {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems)
        )


@dataclass(frozen=True)
class StepSpec:
    """One source or stage as the recipe names it, arguments already checked."""

    name: str
    args: dict[str, Any]
    resources: Resources = field(default_factory=Resources)


@dataclass(frozen=True)
class Recipe:
    """A validated recipe. ``text`` is the YAML exactly as read (stored in the catalog)."""

    name: str
    source: StepSpec | None  # None for a layer recipe
    stages: list[StepSpec]
    output: str
    catalog: str
    on_error: OnError = OnError.RECORD
    shard_rows: int = DEFAULT_SHARD_ROWS
    imports: list[str] = field(default_factory=list)
    text: str = ""
    #: a layer recipe: the base corpus it adds columns to (``source`` is then None)
    layer_of: str | None = None
    #: a layer recipe: the columns its stages add, in recipe order (``Stage.layer_fields``)
    layer_fields: tuple[pa.Field, ...] = ()
    #: a layer recipe: the base columns its stages read (image_id first)
    base_columns: tuple[str, ...] = ()

    @property
    def content_hash(self) -> str:
        """Hash of what decides the corpus' rows; a changed recipe is a new corpus."""
        canonical: dict[str, Any] = {
            "output": self.output,
            "stages": [_hashed(s) for s in self.stages],
            "on_error": self.on_error,
        }
        if self.layer_of is not None:  # the base decides the partitions: no shard_rows
            canonical["layer_of"] = self.layer_of
        else:
            canonical.update(source=_hashed(self.source), shard_rows=self.shard_rows)
        blob = json.dumps(canonical, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def corpus(self) -> str:
        """The corpus the run's shards belong to: the base of a layer, else ``name``."""
        return self.layer_of if self.layer_of is not None else self.name

    @property
    def layer(self) -> str:
        """The catalog layer the run writes: ``base``, or a layer recipe's name."""
        return "base" if self.layer_of is None else self.name

    @property
    def layer_schema(self) -> pa.Schema | None:
        """A layer file's schema (image_id, the layer fields, status, reason); None for
        a corpus recipe."""
        return None if self.layer_of is None else layer_schema(self.layer_fields)

    @property
    def step_names(self) -> list[str]:
        """The source's name, then each stage's: how stats and rejects name the steps
        (a layer's step -1 is its base, ``layer_of:<corpus>``)."""
        first = f"layer_of:{self.layer_of}" if self.source is None else self.source.name
        return [first] + [s.name for s in self.stages]

    def build_source(self, catalog: str | None = None) -> Source:
        """A new source instance (imports the recipe's modules first: Ray workers too).
        A layer's source lists the base's shards from ``catalog`` (default: the recipe's)."""
        import_modules(self.imports)
        if self.source is None:
            from mmdata.engine.layer_source import LayerSource

            return LayerSource(
                catalog=catalog or self.catalog, corpus=self.corpus, columns=self.base_columns
            )
        return SOURCES.get(self.source.name)(**self.source.args)

    def build_stage(self, index: int) -> Stage:
        """A new instance of stage ``index``; its setup() is not yet called."""
        import_modules(self.imports)
        load_builtin()
        spec = self.stages[index]
        return STAGES.get(spec.name)(**spec.args)


def _hashed(step: StepSpec) -> dict[str, Any]:
    """A step as the content hash sees it: without ``custom`` resources when there are
    none, so recipes hashed before that key existed keep their hash."""
    spec = dataclasses.asdict(step)
    if not spec["resources"]["custom"]:
        del spec["resources"]["custom"]
    return spec


def load(path: str | Path, variables: dict[str, str] | None = None) -> Recipe:
    """Read, expand and validate the recipe at ``path``.

    Raises:
        RecipeError: listing every problem (unknown names with the valid ones, bad
            arguments, columns that no earlier step provides).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(str(path), [f"cannot read recipe: {exc.strerror or exc}"]) from None
    return parse(text, str(path), path.resolve().parent, variables)


def parse(text: str, where: str, base_dir: Path, variables: dict[str, str] | None = None) -> Recipe:
    """Validate recipe ``text``; ``where`` names it in errors."""
    problems: list[str] = []
    expanded = expand(text, {**os.environ, **(variables or {})}, problems)
    try:
        data = yaml.safe_load(expanded)
    except yaml.YAMLError as exc:
        raise RecipeError(where, [*problems, f"not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise RecipeError(where, ["a recipe is a mapping with keys " + ", ".join(REQUIRED_KEYS)])
    problems += _check_top(data)
    imports = _list_or_empty(data.get("imports"))  # not a list: a problem already
    try:
        import_modules(imports)
    except ImportError as exc:
        problems.append(f"imports: cannot import {exc.name!r}: {exc}")
    load_builtin()
    layer = "layer_of" in data
    source = None if layer else _step(data.get("source"), "source", SOURCES, base_dir, problems)
    stages = [
        _step(s, f"stages[{i}]", STAGES, base_dir, problems)
        for i, s in enumerate(_list_or_empty(data.get("stages")))
    ]
    fields: tuple[pa.Field, ...] = ()
    base_columns: tuple[str, ...] = ()
    if None not in stages:
        if layer:
            found, fields, base_columns = check_layer_stages(stages)  # type: ignore[arg-type]
            problems += found
        elif source is not None:
            problems += check_columns(source, stages)  # type: ignore[arg-type]
            problems += check_no_layer_fields(stages)  # type: ignore[arg-type]
    if problems:
        raise RecipeError(where, problems)
    output = resolve_path(str(data["output"]), base_dir)
    catalog = resolve_path(str(data["catalog"]), base_dir)
    problems += _outside_roots({"output": output, "catalog": catalog})
    if problems:
        raise RecipeError(where, problems)
    return Recipe(
        name=data["name"],
        source=source,
        stages=stages,  # type: ignore[arg-type]
        output=output,
        catalog=catalog,
        on_error=OnError(data.get("on_error", "record")),
        shard_rows=data.get("shard_rows", DEFAULT_SHARD_ROWS),
        imports=list(imports),
        text=text,
        layer_of=data["layer_of"] if layer else None,
        layer_fields=fields,
        base_columns=base_columns,
    )


def _outside_roots(targets: dict[str, str]) -> list[str]:
    """A problem for each target outside every root of MMDATA_OUTPUT_ROOT (none when
    it is unset). Local roots are resolved like targets; URIs are compared after
    normalising ``..``, so ``s3://b/team/../other`` is outside ``s3://b/team``."""
    roots = [r for r in os.environ.get(OUTPUT_ROOT_ENV, "").split(",") if r.strip()]
    if not roots:
        return []
    roots = [_normal(resolve_path(r.strip(), None)) for r in roots]
    return [
        f"{key} {value!r} is outside the allowed output roots {roots} ({OUTPUT_ROOT_ENV})"
        for key, value in targets.items()
        if not any(_within(_normal(value), root) for root in roots)
    ]


def _normal(location: str) -> str:
    if "://" not in location:
        return location  # resolve_path made it absolute, with symlinks and '..' resolved
    scheme, _, rest = location.partition("://")
    return f"{scheme}://{posixpath.normpath('/' + rest).lstrip('/')}"


def _within(location: str, root: str) -> bool:
    return location == root or location.startswith(root.rstrip("/") + "/")


def expand(text: str, variables: dict[str, str], problems: list[str]) -> str:
    """Replace ``${VAR}``; an undefined variable is a problem, not an empty string."""

    def substitute(match: re.Match) -> str:
        name = match.group(1)
        if name not in variables:
            problems.append(f"undefined variable ${{{name}}}")
            return match.group(0)
        return variables[name]

    return VAR_RE.sub(substitute, text)


def _list_or_empty(value: Any) -> list:
    return value if isinstance(value, list) else []


def _check_top(data: dict) -> list[str]:
    problems = [
        f"unknown key {k!r} (valid keys: {', '.join(sorted(TOP_KEYS))})"
        for k in data
        if k not in TOP_KEYS
    ]
    problems += [f"missing key {k!r}" for k in REQUIRED_KEYS if k not in data]
    problems += _check_layer_keys(data)
    name = data.get("name")
    if name is not None and not (isinstance(name, str) and NAME_RE.match(name)):
        problems.append(
            f"name {name!r} must be letters, digits, '_', '-', '.' "
            "(no path separators), starting with a letter or digit"
        )
    on_error = data.get("on_error", "record")
    if not isinstance(on_error, str) or on_error not in ON_ERROR:
        problems.append(f"on_error must be one of {list(ON_ERROR)}, got {data['on_error']!r}")
    rows = data.get("shard_rows", DEFAULT_SHARD_ROWS)
    if isinstance(rows, bool) or not isinstance(rows, int) or rows <= 0:
        problems.append(f"shard_rows must be a positive integer, got {rows!r}")
    for key in ("output", "catalog"):
        if key in data and not isinstance(data[key], str):
            problems.append(f"{key} must be a path or URI string, got {data[key]!r}")
        elif "\x00" in data.get(key, ""):
            problems.append(f"{key} holds a NUL byte, which no path can")
    if not isinstance(data.get("stages") or [], list):
        problems.append("stages must be a list of {stage_name: {arguments}}")
    if not isinstance(data.get("imports") or [], list):
        problems.append("imports must be a list of module names")
    return problems


def _check_layer_keys(data: dict) -> list[str]:
    """Exactly one of ``source`` and ``layer_of``; what a layer recipe may not say."""
    if "source" in data and "layer_of" in data:
        return ["give either 'source' (a corpus) or 'layer_of' (a layer of a corpus), not both"]
    if "layer_of" not in data:
        return [] if "source" in data else ["missing key 'source' (or 'layer_of' for a layer)"]
    problems = []
    base = data["layer_of"]
    if not (isinstance(base, str) and NAME_RE.match(base)):
        problems.append(f"layer_of must name a corpus (a corpus name), got {base!r}")
    if data.get("name") == "base":
        problems.append("name 'base' is the corpus' own layer; give the layer another name")
    if "shard_rows" in data:
        problems.append(
            "shard_rows is not allowed in a layer recipe: the base corpus' shards are its "
            "partitions (one layer file per base shard)"
        )
    return problems


def _step(
    entry: Any, where: str, registry: Any, base_dir: Path, problems: list[str]
) -> StepSpec | None:
    if isinstance(entry, str):
        entry = {entry: {}}
    if not isinstance(entry, dict) or len(entry) != 1:
        problems.append(f"{where} must be a mapping of one name to its arguments, got {entry!r}")
        return None
    ((name, args),) = entry.items()
    args = dict(args or {}) if isinstance(args, dict) or args is None else args
    if not isinstance(args, dict):
        problems.append(f"{where} {name}: arguments must be a mapping, got {args!r}")
        return None
    try:
        cls = registry.get(name)
    except UnknownNameError as exc:
        problems.append(f"{where}: {exc}")
        return None
    resources = _resources(args.pop("resources", None), cls, f"{where} {name}", problems)
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        problems.append(f"{where} {name}: {cls.__name__} does not implement {', '.join(missing)}")
        return None
    for module, install in getattr(cls, "requires", {}).items():
        if importlib.util.find_spec(module) is None:
            problems.append(f"{where} {name}: needs the {module} package ({install})")
            return None
    try:
        checked = check_args(cls, args, base_dir)
        cls(**checked)  # constructors validate ranges; fail here, not in a worker
    except (ValueError, TypeError) as exc:
        problems.append(f"{where} {name}: {exc}")
        return None
    return StepSpec(name, checked, resources)


def _resources(value: Any, cls: type, where: str, problems: list[str]) -> Resources:
    default = getattr(cls, "default_resources", Resources())
    if value is None:
        return default
    valid = {f.name for f in dataclasses.fields(Resources)}
    if not isinstance(value, dict) or set(value) - valid:
        problems.append(f"{where}: resources must be a mapping with keys {sorted(valid)}")
        return default
    if "custom" in value:
        custom = {} if value["custom"] is None else value["custom"]
        problems += _custom_problems(custom, where)
        value = {**value, "custom": dict(custom) if isinstance(custom, dict) else custom}
    resources = dataclasses.replace(default, **value)
    if getattr(cls, "run_wide", False) and resources.concurrency not in (None, 1):
        problems.append(
            f"{where}: {cls.name} sees every row of the run in one worker; "
            f"concurrency must be 1, got {resources.concurrency}"
        )
    return resources


#: Ray's own resources, which have their own keys (``resources=`` refuses CPU and GPU).
RAY_BUILTIN_RESOURCES = {"CPU": "num_cpus", "GPU": "num_gpus", "memory": None,
                         "object_store_memory": None}  # fmt: skip


def _custom_problems(custom: Any, where: str) -> list[str]:
    """``resources.custom`` must map resource names to positive numbers."""
    if not isinstance(custom, dict):
        return [f"{where}: resources.custom must be a mapping of Ray resource names to "
                f"positive numbers ({{nodeB: 1}}), got {custom!r}"]  # fmt: skip
    problems = []
    for name, amount in custom.items():
        if not isinstance(name, str) or not name:
            problems.append(f"{where}: resources.custom: {name!r} is not a resource name")
        elif name in RAY_BUILTIN_RESOURCES:
            key = RAY_BUILTIN_RESOURCES[name]
            problems.append(
                f"{where}: resources.custom: {name!r} is Ray's own resource"
                + (f"; use resources.{key}" if key else ", not a custom one")
            )
        if isinstance(amount, bool) or not isinstance(amount, int | float):
            problems.append(f"{where}: resources.custom.{name}: {amount!r} is not a number")
        elif not 0 < amount < float("inf"):
            problems.append(f"{where}: resources.custom.{name} must be positive, got {amount!r}")
    return problems


#: Names a layer field may not take: the base's columns, the executors' internal ones,
#: and what the layer views add (``corpus``) or use (``filename``).
RESERVED_LAYER_NAMES = frozenset(
    IMAGE_SCHEMA.names
    + [f.name for f in INTERNAL_FIELDS]
    + ["_item_rejects", "_prepared", "corpus", "filename"]
)


def check_layer_stages(
    stages: list[StepSpec],
) -> tuple[list[str], tuple[pa.Field, ...], tuple[str, ...]]:
    """A layer recipe's stages: each declares the fields it adds (new names, not a base
    column), and reads only base columns or fields of earlier stages. Returns
    (problems, the layer fields in recipe order, the base columns read, image_id first)."""
    problems: list[str] = []
    if not stages:
        problems.append("a layer recipe needs at least one stage (declaring layer_fields)")
    fields: list[pa.Field] = []
    base = set(IMAGE_SCHEMA.names)
    read: list[str] = ["image_id"]
    for i, spec in enumerate(stages):
        cls = STAGES.get(spec.name)
        declared = tuple(getattr(cls, "layer_fields", ()))
        if not declared:
            problems.append(
                f"stages[{i}] {spec.name}: declares no layer_fields, so it adds no column to "
                "a layer (a layer recipe's stages must each declare the columns they add)"
            )
        available = base | {f.name for f in fields}
        missing = [c for c in cls.reads if c not in available]
        if missing:
            problems.append(
                f"stages[{i}] {spec.name} reads {missing}, which are neither columns of the "
                f"base corpus nor layer fields of an earlier stage "
                f"(layer fields so far: {[f.name for f in fields]})"
            )
        read += [c for c in cls.reads if c in base and c not in read]
        for f in declared:
            if not isinstance(f, pa.Field):
                problems.append(
                    f"stages[{i}] {spec.name}: layer_fields holds {f!r}, not a pa.field"
                )
            elif f.name in RESERVED_LAYER_NAMES:
                problems.append(
                    f"stages[{i}] {spec.name}: layer field {f.name!r} is a base or internal "
                    "column name; give it another name"
                )
            elif f.name in {g.name for g in fields}:
                problems.append(
                    f"stages[{i}] {spec.name}: layer field {f.name!r} is already added by an "
                    "earlier stage"
                )
            else:
                fields.append(f)
    return problems, tuple(fields), tuple(read)


def check_no_layer_fields(stages: list[StepSpec]) -> list[str]:
    """A stage that adds layer fields runs only in a layer recipe (its columns have no
    place in a corpus' own shards)."""
    return [
        f"stages[{i}] {spec.name} adds layer fields "
        f"{[f.name for f in STAGES.get(spec.name).layer_fields]}: it runs only in a layer "
        "recipe (layer_of: <corpus>)"
        for i, spec in enumerate(stages)
        if getattr(STAGES.get(spec.name), "layer_fields", ())
    ]


def check_columns(source: StepSpec, stages: list[StepSpec]) -> list[str]:
    """Every column a stage reads must be written by the source or an earlier stage."""
    available = set(SOURCES.get(source.name).writes)
    problems = []
    for i, spec in enumerate(stages):
        cls = STAGES.get(spec.name)
        missing = [c for c in cls.reads if c not in available]
        if missing:
            problems.append(
                f"stages[{i}] {spec.name} reads {missing}, which neither the "
                f"source {source.name!r} nor an earlier stage provides "
                f"(available: {sorted(available)})"
            )
        available |= set(cls.writes)
    return problems
