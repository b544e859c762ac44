"""Bad input gets the same typed error on both backends, and nothing is written.

Each test runs on SQLite and PostgreSQL (the ``session`` fixture); the expected messages
are literal, so both backends give exactly the same one. After each refusal the session
must still be usable: a valid write succeeds.
"""

import math
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, select, update

from aana.core.models import AsrSegment, AsrTranscription, AsrTranscriptionInfo, TimeInterval
from aana.core.models.video import Video
from aana.exceptions.db import (
    InvalidInputException,
    InvalidJsonException,
    InvalidTypeException,
    InvalidValueException,
)
from aana.storage.checks import MAX_JSON_DEPTH
from aana.storage.models import CaptionEntity, MediaEntity, Status, TaskEntity
from tests.helpers import nested

SURROGATE = "\ud800"
NESTED_TOO_DEEP = 100_000


def count(api, session, entity_class):
    return api.BaseRepository(session, entity_class).count_all()


# --- videos: text columns ---


def test_video_save__lone_surrogate_in_title__value_error_nothing_written(api, session):
    videos = api.VideoRepository(session)
    with pytest.raises(InvalidValueException) as raised:
        videos.save(Video(url="https://example.com/v.mp4", title=f"Caf{SURROGATE}"))
    assert isinstance(raised.value, ValueError)
    assert raised.value.column == "video.title"
    assert str(raised.value) == (
        "video.title: the text has a lone surrogate ('\\ud800') at index 3, which is not "
        "valid Unicode and cannot be stored; decode the bytes it came from with "
        "errors='replace', or fix its encoding."
    )
    assert count(api, session, MediaEntity) == 0
    videos.save(Video(url="https://example.com/v.mp4", title="Café"))
    assert count(api, session, MediaEntity) == 1


def test_video_save__nul_in_description__value_error_on_both_backends(api, session):
    videos = api.VideoRepository(session)
    with pytest.raises(InvalidValueException, match=r"video\.description: .*NUL character"):
        videos.save(Video(url="https://example.com/v.mp4", description="a\x00b"))
    assert count(api, session, MediaEntity) == 0
    videos.save(Video(url="https://example.com/v.mp4", description="ab"))
    assert count(api, session, MediaEntity) == 1


def test_video_update__non_text_title__type_error(api, session):
    videos = api.VideoRepository(session)
    media_id = videos.save(Video(url="https://example.com/v.mp4", title="T"))["media_id"]
    with pytest.raises(InvalidTypeException, match=r"video\.title takes text, got int 42"):
        videos.update(media_id, title=42)
    assert isinstance(InvalidTypeException("x"), TypeError)
    session.expunge_all()
    assert videos.get_metadata(media_id).title == "T"
    videos.update(media_id, title="U")
    assert videos.get_metadata(media_id).title == "U"


# --- transcripts: floats and JSON ---


def save_transcript(api, session, info=None, segments=()):
    return api.TranscriptRepository(session).save(
        "whisper",
        info or AsrTranscriptionInfo(language="en", language_confidence=0.5),
        AsrTranscription(text="hello"),
        list(segments),
    )


def test_transcript_save__nan_language_confidence__value_error_nothing_written(api, session):
    # Built without validation, as outputs of other code may be.
    info = AsrTranscriptionInfo.model_construct(language="en", language_confidence=math.nan)
    with pytest.raises(InvalidValueException) as raised:
        save_transcript(api, session, info)
    assert str(raised.value) == "language_confidence must be between 0 and 1, got nan"
    assert raised.value.column == "transcript.language_confidence"
    assert api.TranscriptRepository(session).count_all() == 0
    save_transcript(api, session)
    assert api.TranscriptRepository(session).count_all() == 1


def test_transcript_save__infinite_segment_time__json_error_nothing_written(api, session):
    segment = AsrSegment(text="a", time_interval=TimeInterval(start=0.0, end=math.inf))
    with pytest.raises(InvalidJsonException) as raised:
        save_transcript(api, session, segments=[segment])
    assert isinstance(raised.value, TypeError) and isinstance(raised.value, ValueError)
    assert str(raised.value) == (
        "transcript.segments must be JSON-serialisable and storable: "
        "transcript.segments[0]['time_interval']['end'] is inf: JSON has no NaN or "
        "infinity; store None instead."
    )
    assert api.TranscriptRepository(session).count_all() == 0
    fine = AsrSegment(text="a", time_interval=TimeInterval(start=0.0, end=1.0))
    assert save_transcript(api, session, segments=[fine]).segments[0]["time_interval"]["end"] == 1.0


# --- captions: one at a time (ORM) and in bulk ---

BAD_CAPTIONS = {
    "frame_id_beyond_32_bits": (
        {"frame_id": 2**70},
        InvalidValueException,
        "caption.frame_id is a 32-bit integer column: it holds -2147483648 to 2147483647, "
        "got 1180591620717411303424",
    ),
    "nan_timestamp": (
        {"timestamp": math.nan},
        InvalidValueException,
        "caption.timestamp takes finite numbers, got nan: NaN and infinity cannot be "
        "stored; leave the value out (None) where it is unknown",
    ),
    "lone_surrogate_in_caption": (
        {"caption": f"a cat{SURROGATE}"},
        InvalidValueException,
        "caption.caption: the text has a lone surrogate ('\\ud800') at index 5, which is "
        "not valid Unicode and cannot be stored; decode the bytes it came from with "
        "errors='replace', or fix its encoding.",
    ),
    "fractional_frame_id": (
        {"frame_id": 2.5},
        InvalidValueException,
        "caption.frame_id takes whole numbers, got 2.5; round it first, e.g. round(2.5)",
    ),
    "text_timestamp": (
        {"timestamp": "1.5"},
        InvalidTypeException,
        "caption.timestamp takes a number, got str '1.5'",
    ),
}
GOOD_CAPTION = {"caption": "a cat", "timestamp": 1.5, "frame_id": 3}


@pytest.mark.parametrize("case", BAD_CAPTIONS.values(), ids=BAD_CAPTIONS.keys())
def test_caption_save__bad_value__typed_error_nothing_written(api, session, case):
    bad, error, message = case
    captions = api.CaptionRepository(session)
    with pytest.raises(error) as raised:
        captions.save("blip", **{**GOOD_CAPTION, **bad})
    assert str(raised.value) == message
    assert captions.count_all() == 0
    captions.save("blip", **GOOD_CAPTION)
    assert captions.count_all() == 1


# A short and a longer bulk insert (checked in one pass over each column, then value by value).
@pytest.mark.parametrize("rows", [3, 150], ids=["short", "long"])
@pytest.mark.parametrize("case", BAD_CAPTIONS.values(), ids=BAD_CAPTIONS.keys())
def test_caption_save_all__one_bad_value__typed_error_nothing_written(api, session, case, rows):
    bad, error, message = case
    (key, value), *_ = bad.items()
    columns = {
        "caption": [f"c{n}" for n in range(rows)],
        "timestamp": [float(n) for n in range(rows)],
        "frame_id": list(range(rows)),
    }
    columns[key][rows - 2] = value
    captions = api.CaptionRepository(session)
    with pytest.raises(error) as raised:
        captions.save_all("blip", columns["caption"], columns["timestamp"], columns["frame_id"])
    assert str(raised.value) == message
    assert captions.count_all() == 0
    captions.save_all("blip", ["a", "b"], [0.0, 1.0], [0, 1])
    assert captions.count_all() == 2


def test_caption_create_multiple__bad_value__typed_error_nothing_written(api, session):
    captions = api.CaptionRepository(session)
    entities = [
        CaptionEntity(model="blip", caption="a", timestamp=0.0, frame_id=0),
        CaptionEntity(model="blip", caption="b", timestamp=math.inf, frame_id=1),
    ]
    with pytest.raises(InvalidValueException, match=r"caption\.timestamp takes finite"):
        captions.create_multiple(entities)
    assert captions.count_all() == 0
    captions.create_multiple([CaptionEntity(model="blip", caption="a", timestamp=0, frame_id=0)])
    assert captions.count_all() == 1


@pytest.mark.parametrize("many", [False, True], ids=["one_row", "executemany"])
def test_core_insert__bad_value__same_typed_error(api, session, many):
    rows = [{"model": "m", "caption": "c", "timestamp": 0.0, "frame_id": 0, "caption_type": "x"}]
    if many:
        rows.append({**rows[0], "frame_id": -(2**40)})
    else:
        rows[0]["frame_id"] = -(2**40)
    # Plain Core, no repository: the typed exception, not a StatementError around it.
    with pytest.raises(InvalidValueException, match=r"caption\.frame_id is a 32-bit"):
        session.execute(insert(CaptionEntity.__table__), rows)
    session.rollback()
    assert count(api, session, CaptionEntity) == 0
    statement = (
        insert(CaptionEntity)
        .values(**GOOD_CAPTION, model="m", caption_type="caption")
        .returning(CaptionEntity)
    )
    with pytest.raises(InvalidValueException, match=r"caption\.caption: the text has a NUL"):
        session.scalars(statement.values(caption="\x00")).all()
    session.rollback()
    assert session.scalars(statement).one().frame_id == 3


# --- tasks: the repository and the queue's statements ---


@pytest.mark.parametrize(
    ("priority", "message"),
    [
        (
            math.inf,
            "tasks.priority takes whole numbers, got inf; NaN and infinity are not integers "
            "(for 'highest', use the column's largest value)",
        ),
        (
            2**70,
            "tasks.priority is a 32-bit integer column: it holds -2147483648 to 2147483647, "
            "got 1180591620717411303424",
        ),
    ],
    ids=["infinite", "beyond_32_bits"],
)
def test_task_save__bad_priority__value_error_nothing_written(api, session, priority, message):
    tasks = api.TaskRepository(session)
    with pytest.raises(InvalidValueException) as raised:
        tasks.save("ep", {"x": 1}, priority=priority)
    assert str(raised.value) == message
    assert tasks.count()["total"] == 0
    assert tasks.save("ep", {"x": 1}, priority=2**31 - 1).priority == 2**31 - 1
    assert tasks.count()["total"] == 1


def test_task_save__bool_priority__type_error(api, session):
    tasks = api.TaskRepository(session)
    with pytest.raises(InvalidTypeException, match=r"tasks\.priority takes an integer, got"):
        tasks.save("ep", {}, priority=True)
    assert tasks.count()["total"] == 0


def test_task_save__data_nested_too_deep__type_error_not_recursion_error(api, session):
    tasks = api.TaskRepository(session)
    with pytest.raises(TypeError) as raised:
        tasks.save("ep", nested(NESTED_TOO_DEEP))
    assert isinstance(raised.value, InvalidJsonException)
    assert f"nested more than {MAX_JSON_DEPTH} levels deep" in str(raised.value)
    assert len(str(raised.value)) < 300
    assert tasks.count()["total"] == 0
    assert tasks.save("ep", nested(MAX_JSON_DEPTH - 1)).data == nested(MAX_JSON_DEPTH - 1)


def test_task_save__nan_in_data__type_error_nothing_written(api, session):
    tasks = api.TaskRepository(session)
    with pytest.raises(TypeError) as raised:
        tasks.save("ep", {"scores": [0.5, math.nan]})
    assert str(raised.value) == (
        "task data must be JSON-serialisable and storable: task data['scores'][1] is nan: "
        "JSON has no NaN or infinity; store None instead."
    )
    assert tasks.count()["total"] == 0
    tasks.save("ep", {"scores": [0.5, None]})
    assert tasks.count()["total"] == 1


def test_task_save__surrogate_in_endpoint__value_error(api, session):
    tasks = api.TaskRepository(session)
    with pytest.raises(InvalidValueException, match=r"tasks\.endpoint: the text has a lone"):
        tasks.save(f"ep{SURROGATE}", {})
    assert tasks.count()["total"] == 0


def test_task_update_status__nan_progress__value_error_task_unchanged(api, session):
    tasks = api.TaskRepository(session)
    task = tasks.save("ep", {})
    with pytest.raises(InvalidValueException) as raised:
        tasks.update_status(task.id, Status.RUNNING, progress=math.nan)
    assert str(raised.value) == (
        "tasks.progress takes finite numbers, got nan: NaN and infinity cannot be stored; "
        "leave the value out (None) where it is unknown"
    )
    session.expunge_all()
    stored = tasks.read(task.id)
    assert (stored.status, stored.progress) == (Status.CREATED, 0.0)
    assert tasks.update_status(task.id, Status.RUNNING, progress=0.5).progress == 0.5


def test_task_update_status__surrogate_in_result__json_error_task_unchanged(api, session):
    tasks = api.TaskRepository(session)
    task = tasks.save("ep", {})
    with pytest.raises(InvalidJsonException) as raised:
        tasks.update_status(task.id, Status.COMPLETED, result={"text": f"x{SURROGATE}"})
    assert str(raised.value).startswith(
        "task result must be JSON-serialisable and storable: task result['text'] has a lone "
        "surrogate ('\\ud800') at index 1"
    )
    session.expunge_all()
    stored = tasks.read(task.id)
    assert (stored.status, stored.result) == (Status.CREATED, None)
    assert tasks.update_status(task.id, Status.COMPLETED, result={"text": "x"}).result == {
        "text": "x"
    }


def test_task_update_status__uncommitted__nan_progress_rolls_back(api, session):
    # commit=False runs the statement in the session's transaction, not on the driver.
    tasks = api.TaskRepository(session)
    task_id = tasks.save("ep", {}).id  # the failed write rolls back, expiring the task
    with pytest.raises(InvalidValueException, match=r"tasks\.progress takes finite"):
        tasks.update_status(task_id, Status.RUNNING, progress=-math.inf, commit=False)
    assert not session.in_transaction() or not session.dirty
    assert tasks.read(task_id).status == Status.CREATED


def test_task_column__not_a_datetime__type_error(api, session):
    tasks = api.TaskRepository(session)
    task_id = tasks.save("ep", {}).id  # the rollback expires the task
    with pytest.raises(InvalidTypeException, match=r"tasks\.assigned_at takes an aware"):
        session.execute(update(TaskEntity).values(assigned_at=math.nan))
    session.rollback()
    with pytest.raises(ValueError, match="naive datetime"):
        tasks.update(task_id, assigned_at=datetime(2024, 1, 1))
    when = datetime(2024, 1, 1, tzinfo=UTC)
    assert tasks.update(task_id, assigned_at=when).assigned_at == when


# --- pages: limits and offsets ---


@pytest.mark.parametrize(
    "read",
    [
        lambda api, session: api.TaskRepository(session).get_tasks(limit=-1),
        lambda api, session: api.TaskRepository(session).get_tasks(offset=-1),
        lambda api, session: api.TaskRepository(session).fetch_unprocessed_tasks(limit=-1),
        lambda api, session: api.CaptionRepository(session).list(limit=-1),
        lambda api, session: api.CaptionRepository(session).list(offset=-5),
    ],
    ids=["get_tasks_limit", "get_tasks_offset", "fetch_unprocessed", "list_limit", "list_offset"],
)
def test_negative_limit_or_offset__value_error_before_any_sql(api, session, read):
    task = api.TaskRepository(session).save("ep", {})
    with pytest.raises(InvalidValueException, match=r"(limit|offset) must be .*an integer >= 0"):
        read(api, session)
    assert not session.in_transaction()
    stored = api.TaskRepository(session).read(task.id)
    assert stored.status == Status.CREATED  # nothing was claimed
    assert api.TaskRepository(session).get_tasks(limit=0) == []
    assert [t.id for t in api.TaskRepository(session).fetch_unprocessed_tasks(limit=1)] == [task.id]


def test_limit_not_an_integer__type_error(api, session):
    with pytest.raises(InvalidTypeException, match="limit must be None"):
        api.CaptionRepository(session).list(limit="10")


def test_bad_input_errors__are_aana_exceptions_that_pickle(api, session):
    import pickle

    with pytest.raises(InvalidInputException) as raised:
        api.CaptionRepository(session).save("blip", "x", timestamp=math.nan, frame_id=0)
    copy = pickle.loads(pickle.dumps(raised.value))
    assert (type(copy), str(copy), copy.column) == (
        InvalidValueException,
        str(raised.value),
        "caption.timestamp",
    )
    assert copy.get_data()["error"] == "InvalidValueException"
    assert count(api, session, CaptionEntity) == 0
    assert session.scalars(select(CaptionEntity)).all() == []


# --- the queue's own statements: AanaSDK.defer and defer_many ---


@pytest.mark.parametrize("many", [False, True], ids=["defer", "defer_many"])
@pytest.mark.parametrize(
    ("arguments", "error", "pattern"),
    [
        ({"priority": math.inf}, InvalidValueException, r"^tasks\.priority takes whole"),
        ({"priority": 2**70}, InvalidValueException, r"^tasks\.priority is a 32-bit"),
        ({"endpoint": f"ep{SURROGATE}"}, InvalidValueException, r"^tasks\.endpoint: .*surrogate"),
        ({"user_id": "u\x00"}, InvalidValueException, r"^tasks\.user_id: .*NUL character"),
        ({"data": {"x": math.nan}}, InvalidJsonException, r"^task data.* is nan"),
        ({"data": nested(NESTED_TOO_DEEP)}, InvalidJsonException, r"nested more than"),
    ],
    ids=["inf_priority", "huge_priority", "surrogate_endpoint", "nul_user", "nan_data", "deep"],
)
def test_app_defer__bad_input__typed_error_nothing_written(
    db, api, session, many, arguments, error, pattern
):
    from aana.sdk import AanaSDK

    app = AanaSDK()
    call = {"endpoint": "ep", "data": {"x": 1}, **arguments}
    data = call.pop("data")
    items = [*([{"x": 0}] * 149), data]  # COPY on PostgreSQL
    with pytest.raises(error, match=pattern):
        if api.name == "sync" and many:
            app.defer_many(data_items=items, **call)
        elif api.name == "sync":
            app.defer(data=data, **call)
        elif many:
            api.run(app.defer_many_async(data_items=items, **call))
        else:
            api.run(app.defer_async(data=data, **call))
    tasks = api.TaskRepository(session)
    assert tasks.count()["total"] == 0
    app.defer("ep", {"x": 1})
    assert tasks.count()["total"] == 1
