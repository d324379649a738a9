"""Loading models/: kinds from a sidecar or a header, dependencies by parsing, and errors that name the file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from orchestrion.model.config import ModelKind
from orchestrion.model.errors import ModelProjectError, UnknownModel
from orchestrion.model.project import ModelProject, load_project

# The relations a warehouse has before any model is built: landing views and identity tables.
WAREHOUSE = {"events", "tracks", "workout_completed", "pricing_viewed", "event_profiles", "profiles"}


def write(root: Path, files: dict[str, str]) -> Path:
    folder = root / "models"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def load(root: Path, files: dict[str, str], **kwargs: object) -> ModelProject:
    return load_project(write(root, files), WAREHOUSE, **kwargs)  # type: ignore[arg-type]


def problem(root: Path, files: dict[str, str], **kwargs: object) -> str:
    with pytest.raises(ModelProjectError) as caught:
        load(root, files, **kwargs)
    return str(caught.value)


WORKOUTS = "SELECT p.profile_id, count(*) AS workouts FROM workout_completed w JOIN event_profiles p USING (message_id)"


def test_a_sidecar_declares_kind_and_settings(tmp_path: Path) -> None:
    project = load(
        tmp_path,
        {
            "workouts.sql": WORKOUTS + " GROUP BY 1",
            "workouts.yml": "kind: traits\nfreshness: 2h\nschedule: '*/30 * * * *'\ndescription: how often\n",
        },
    )
    model = project.models["workouts"]
    assert model.kind is ModelKind.TRAITS
    assert model.config.freshness == dt.timedelta(hours=2)
    assert model.config.schedule == "*/30 * * * *"
    assert model.inputs == {"workout_completed", "event_profiles"}
    assert model.where == "models/workouts.sql"


def test_a_header_declares_the_same_and_ordinary_comments_stay_prose(tmp_path: Path) -> None:
    sql = (
        "-- Active members: more than one workout.\n"
        "-- kind: audience\n"
        "-- freshness: 30m\n"
        "-- Note: recomputed every hour.\n"
        "SELECT profile_id FROM workouts WHERE workouts > 1\n"
    )
    project = load(tmp_path, {"workouts.sql": "-- kind: traits\n" + WORKOUTS + " GROUP BY 1", "active.sql": sql})
    active = project.models["active"]
    assert active.kind is ModelKind.AUDIENCE
    assert active.config.freshness == dt.timedelta(minutes=30)
    assert active.inputs == {"workouts"}


def test_models_come_in_dependency_order_whatever_their_names(tmp_path: Path) -> None:
    project = load(
        tmp_path,
        {
            "a_top.sql": "-- kind: audience\nSELECT profile_id FROM m_middle",
            "m_middle.sql": "-- kind: traits\nSELECT profile_id, n FROM z_base",
            "z_base.sql": "-- kind: traits\n" + WORKOUTS.replace("workouts", "n") + " GROUP BY 1",
            "other.sql": "-- kind: traits\nSELECT profile_id FROM profiles",
        },
    )
    order = project.names
    assert order.index("z_base") < order.index("m_middle") < order.index("a_top")
    assert project.upstream("a_top") == {"m_middle", "z_base"}
    assert project.downstream("z_base") == {"m_middle", "a_top"}


def test_ctes_and_table_functions_are_not_dependencies(tmp_path: Path) -> None:
    sql = (
        "-- kind: table\n"
        "WITH recent AS (SELECT * FROM workout_completed), days AS (SELECT range AS d FROM range(7))\n"
        "SELECT r.message_id, d.d FROM recent r CROSS JOIN days d"
    )
    model = load(tmp_path, {"x.sql": sql}).models["x"]
    assert model.inputs == {"workout_completed"}


def test_an_unknown_table_is_an_error_naming_the_file_and_the_table(tmp_path: Path) -> None:
    message = problem(tmp_path, {"intent.sql": "-- kind: traits\nSELECT profile_id FROM pricing_viewd"})
    assert message.startswith("models/intent.sql: unknown table `pricing_viewd`")


def test_a_cycle_is_an_error_naming_the_file_and_the_table(tmp_path: Path) -> None:
    message = problem(
        tmp_path,
        {
            "a.sql": "-- kind: traits\nSELECT profile_id FROM b",
            "b.sql": "-- kind: traits\nSELECT profile_id FROM c",
            "c.sql": "-- kind: traits\nSELECT profile_id FROM a",
        },
    )
    assert "a cycle (a -> b -> c -> a)" in message
    assert message.startswith("models/c.sql: reads `a`")


def test_a_model_reading_its_own_table_is_a_cycle(tmp_path: Path) -> None:
    message = problem(tmp_path, {"a.sql": "-- kind: traits\nSELECT profile_id FROM a"})
    assert message == "models/a.sql: reads `a`, its own table: a cycle"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"x.sql": "SELECT 1"}, "models/x.sql: no kind declared; add x.yml"),
        ({"x.sql": "-- kind: traits\nSELEC profile_id FROM profiles"}, "models/x.sql: not valid duckdb SQL"),
        ({"x.sql": "-- kind: traits\nSELECT 1; SELECT 2"}, "exactly one SELECT statement (found 2)"),
        (
            {"x.sql": "-- kind: traits\nDELETE FROM profiles"},
            "a model is one SELECT (or WITH ... SELECT); found DELETE",
        ),
        ({"x.sql": "-- kind: segment\nSELECT 1"}, "models/x.sql (header): kind: Input should be"),
        ({"x.sql": "-- kind: state\nSELECT 1"}, "a state model declares its allowed values"),
        ({"x.sql": "-- kind: traits\n-- values: [a]\nSELECT 1"}, "only state models declare values"),
        ({"x.sql": "-- kind: traits\n-- schedule: whenever\nSELECT 1"}, "schedule 'whenever'"),
        ({"x.sql": "-- kind: audience\n-- incremental: {time_column: day}\nSELECT 1"}, "an audience is rebuilt whole"),
        (
            {"x.sql": "-- kind: table\n-- incremental: {time_column: day, lookback: 36h}\nSELECT 1"},
            "lookback must be a whole number of days",
        ),
        ({"x.sql": "-- kind: traits\nSELECT 1", "x.yml": "kind: traits"}, "settings are in both the header"),
        ({"x.yml": "kind: traits\n"}, "models/x.yml: no x.sql beside it"),
        ({"Bad-Name.sql": "-- kind: traits\nSELECT 1"}, "a model's file name is its table name"),
        ({"x__new.sql": "-- kind: traits\nSELECT 1"}, "not ending in __new or __delta"),
        ({"profiles.sql": "-- kind: traits\nSELECT 1"}, "`profiles` is already a table or view of the workspace"),
        ({"x.sql": "-- kind: traits\nSELECT * FROM other_db.users"}, "reads other_db.users; models read the tables"),
    ],
)
def test_mistakes_are_reported_with_the_file_and_the_fix(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    assert expected in problem(tmp_path, files)


def test_yaml_files_that_declare_no_model_belong_to_someone_else(tmp_path: Path) -> None:
    project = load(tmp_path, {"computed.yml": "computed_traits:\n  workouts: {count: workout_completed}\n"})
    assert project.names == []


def test_a_missing_models_folder_is_an_empty_project(tmp_path: Path) -> None:
    assert load_project(tmp_path / "models", WAREHOUSE).names == []


def test_a_model_may_keep_the_table_it_built_before(tmp_path: Path) -> None:
    files = {"workouts.sql": "-- kind: traits\n" + WORKOUTS + " GROUP BY 1"}
    project = load_project(write(tmp_path, files), [*WAREHOUSE, "workouts"], built_models=["workouts"])
    assert project.names == ["workouts"]


def test_the_table_of_a_deleted_model_is_no_longer_an_input(tmp_path: Path) -> None:
    files = {"reader.sql": "-- kind: traits\nSELECT profile_id FROM gone"}
    with pytest.raises(ModelProjectError, match="unknown table `gone`"):
        load_project(write(tmp_path, files), [*WAREHOUSE, "gone"], built_models=["gone"])


def test_the_version_changes_with_the_sql_or_the_settings_only(tmp_path: Path) -> None:
    sql = "-- kind: traits\n" + WORKOUTS + " GROUP BY 1"
    first = load(tmp_path / "a", {"w.sql": sql}).models["w"].version
    assert load(tmp_path / "b", {"w.sql": sql}).models["w"].version == first
    assert load(tmp_path / "c", {"w.sql": sql + " -- more"}).models["w"].version != first
    assert (
        load(tmp_path / "d", {"w.sql": sql.replace("traits", "traits\n-- freshness: 1h")}).models["w"].version != first
    )


def test_a_file_may_be_written_in_another_dialect(tmp_path: Path) -> None:
    sql = "-- kind: traits\n-- dialect: postgres\nSELECT profile_id, now()::date AS d FROM profiles"
    model = load(tmp_path, {"x.sql": sql}).models["x"]
    assert model.dialect == "postgres"
    default = load(
        tmp_path / "other", {"x.sql": "-- kind: traits\nSELECT profile_id FROM profiles"}, dialect="postgres"
    )
    assert default.models["x"].dialect == "postgres"


def test_selection_takes_dependents_with_a_trailing_plus_and_parents_with_a_leading_one(tmp_path: Path) -> None:
    project = load(
        tmp_path,
        {
            "base.sql": "-- kind: traits\n" + WORKOUTS.replace("workouts", "n") + " GROUP BY 1",
            "middle.sql": "-- kind: traits\nSELECT profile_id, n FROM base",
            "top.sql": "-- kind: audience\nSELECT profile_id FROM middle",
            "alone.sql": "-- kind: traits\nSELECT profile_id FROM profiles",
        },
    )
    assert project.select(None) == project.names
    assert project.select(["middle"]) == ["middle"]
    assert project.select(["middle+"]) == ["middle", "top"]
    assert project.select(["+middle"]) == ["base", "middle"]
    chosen = {"base", "middle", "top", "alone"}
    assert project.select(["+middle+", "alone"]) == [name for name in project.names if name in chosen]
    with pytest.raises(UnknownModel, match="no model named 'midle'"):
        project.select(["midle+"])
