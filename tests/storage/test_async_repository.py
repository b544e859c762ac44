"""What the async API adds: generated twins that cannot drift, loaded entities, races,
FastAPI, and an event loop that never waits on the database.

The repositories' behaviour itself is tested once for both APIs (the ``api`` fixture in
the repository test modules).
"""

import asyncio
import inspect
import logging
import time
from collections import Counter

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from aana.core.models import AsrSegment, AsrTranscription, AsrTranscriptionInfo, TimeInterval
from aana.core.models.video import Video
from aana.exceptions.db import MediaIdAlreadyExistsException, NotFoundException
from aana.storage.models import CaptionEntity, MediaEntity, Status, VideoEntity
from aana.storage.repository import (
    AsyncBaseRepository,
    AsyncCaptionRepository,
    AsyncMediaRepository,
    AsyncTaskRepository,
    AsyncTranscriptRepository,
    AsyncVideoRepository,
    BaseRepository,
    CaptionRepository,
    MediaRepository,
    TaskRepository,
    TranscriptRepository,
    VideoRepository,
)
from aana.storage.repository.asynchronous import SYNC_ONLY, twin_methods
from aana.storage.session import AsyncDbDependency, get_async_session, get_session

TWINS = [
    (BaseRepository, AsyncBaseRepository),
    (MediaRepository, AsyncMediaRepository),
    (VideoRepository, AsyncVideoRepository),
    (TranscriptRepository, AsyncTranscriptRepository),
    (CaptionRepository, AsyncCaptionRepository),
    (TaskRepository, AsyncTaskRepository),
]


def public_methods(cls):
    return {
        name for name, _ in inspect.getmembers(cls, inspect.isfunction) if not name.startswith("_")
    }


@pytest.mark.parametrize(("sync_class", "async_class"), TWINS, ids=lambda c: c.__name__)
def test_twins__every_public_method_awaited_with_the_same_signature(sync_class, async_class):
    expected = public_methods(sync_class) - SYNC_ONLY
    assert set(twin_methods(sync_class)) == expected and expected
    for name in expected:
        twin = getattr(async_class, name)
        assert inspect.iscoroutinefunction(twin), name
        assert inspect.signature(twin) == inspect.signature(getattr(sync_class, name)), name
    assert async_class.sync_class is sync_class


@pytest.mark.parametrize(("sync_class", "async_class"), TWINS, ids=lambda c: c.__name__)
def test_twins__constructor_takes_an_async_session_and_the_same_other_arguments(
    sync_class, async_class
):
    sync_parameters = list(inspect.signature(sync_class).parameters.values())
    async_parameters = list(inspect.signature(async_class).parameters.values())
    assert [p.name for p in async_parameters] == [p.name for p in sync_parameters]
    assert async_parameters[0].annotation == "AsyncSession"
    assert async_parameters[1:] == sync_parameters[1:]


def test_twins__the_sync_only_methods_are_context_managers_of_the_sync_base():
    assert public_methods(BaseRepository) >= SYNC_ONLY
    for name in SYNC_ONLY:
        assert not hasattr(AsyncBaseRepository, name)


def test_async_repository__refuses_a_sync_session(session):
    with pytest.raises(TypeError, match=r"takes an AsyncSession .* use VideoRepository"):
        AsyncVideoRepository(session)


def test_async_repository__reads_never_lazy_load(db):
    """A video read as a media, and a transcript, keep every column once the session ends."""

    async def run():
        async with get_async_session() as session:
            await AsyncVideoRepository(session).save(
                Video(url="https://example.com/v.mp4", title="T", media_id="v1")
            )
            transcript = await AsyncTranscriptRepository(session).save(
                "whisper",
                AsrTranscriptionInfo(language="en", language_confidence=0.5),
                AsrTranscription(text="hello"),
                [AsrSegment(text="hello", time_interval=TimeInterval(start=0, end=1))],
            )
        async with get_async_session() as session:
            media = await AsyncMediaRepository(session).read("v1")
            listed = await AsyncMediaRepository(session).list()
            stored = await AsyncTranscriptRepository(session).read(transcript.id)
        await db.get_async_engine().dispose()
        return media, listed, stored

    media, listed, stored = asyncio.run(run())
    assert type(media) is VideoEntity and type(listed[0]) is VideoEntity
    assert (media.title, media.url, media.path, media.created_at.tzinfo is not None) == (
        "T",
        "https://example.com/v.mp4",
        None,
        True,
    )
    assert listed[0].title == "T"
    assert (stored.transcript, stored.language, stored.segments[0]["text"]) == (
        "hello",
        "en",
        "hello",
    )


def test_async_repository__results_loaded_even_if_the_session_expires_on_commit(db):
    """Each call's results are loaded; other objects of the session expire as usual."""

    async def run():
        engine = db.get_async_engine()
        async with AsyncSession(engine) as session:  # expire_on_commit=True: the default
            captions = AsyncCaptionRepository(session)
            made = await captions.create_multiple(
                [CaptionEntity(model="m", caption=f"c{n}", timestamp=n, frame_id=n) for n in (0, 1)]
            )
            created = [(caption.caption, caption.frame_id) for caption in made]
            updated = await captions.update(made[0].id, caption="new")
        await engine.dispose()
        return created, made, updated

    created, made, updated = asyncio.run(run())
    assert created == [("c0", 0), ("c1", 1)]
    assert updated is made[0] and (updated.caption, updated.frame_id) == ("new", 0)


def test_async_repository__run_sync_runs_several_steps_in_one_transaction(db):
    async def run():
        async with get_async_session() as session:
            videos = AsyncVideoRepository(session)

            def save_two(repository: VideoRepository) -> list[str]:
                with repository.writing("saving two videos"):
                    session.sync_session.add_all([VideoEntity(id="a"), VideoEntity(id="a2")])
                    session.sync_session.commit()
                return [video.id for video in repository.list()]

            ids = await videos.run_sync(save_two)
            with pytest.raises(MediaIdAlreadyExistsException):
                await videos.save(Video(url="https://example.com/a.mp4", media_id="a"))
            count = await videos.count_all()
        await db.get_async_engine().dispose()
        return ids, count

    assert asyncio.run(run()) == (["a", "a2"], 2)


def race_settings(db):
    """``db`` with a small pool: 50 racers must wait for connections."""
    return db.model_copy(update={"pool_size": 3, "max_overflow": 2})


def test_save__50_coroutines_racing_on_colliding_ids__each_stored_once(db):
    settings = race_settings(db)
    engine = settings.get_async_engine()
    pool = engine.sync_engine.pool
    peak = 0

    @event.listens_for(engine.sync_engine, "checkout")
    def on_checkout(*_args):
        nonlocal peak
        peak = max(peak, pool.checkedout())

    async def racer(n: int) -> str:
        media_id = f"race-{n % 10}"  # 10 ids, 5 racers each
        async with AsyncSession(engine, expire_on_commit=False) as session:
            videos = AsyncVideoRepository(session)
            try:
                await videos.save(Video(url=f"https://example.com/{n}.mp4", media_id=media_id))
            except MediaIdAlreadyExistsException as error:
                assert error.media_id == media_id
                # The session is still usable, and sees the winner's video.
                return "duplicate" if await videos.check_media_exists(media_id) else "broken"
            return "won"

    async def run():
        try:
            return await asyncio.gather(*(racer(n) for n in range(50)))
        finally:
            await engine.dispose()

    outcomes = asyncio.run(run())
    assert Counter(outcomes) == {"won": 10, "duplicate": 40}
    assert 1 < peak <= settings.pool_size + settings.max_overflow
    with get_session() as session:  # nothing half-written: a media row has its video row
        media = session.scalars(select(MediaEntity.id).order_by(MediaEntity.id)).all()
        videos = session.scalar(select(func.count()).select_from(VideoEntity.__table__))
    assert media == [f"race-{n}" for n in range(10)] and videos == 10


app = FastAPI()


@app.post("/videos")
async def save_video(url: str, session: AsyncDbDependency) -> dict[str, str]:
    return await AsyncVideoRepository(session).save(Video(url=url, title="from the API"))


@app.get("/videos/{media_id}")
async def video_title(media_id: str, session: AsyncDbDependency) -> dict[str, str]:
    try:
        return {"title": (await AsyncVideoRepository(session).get_metadata(media_id)).title}
    except NotFoundException as error:
        return {"error": error.__class__.__name__}


def test_async_db_dependency__serves_an_async_endpoint(db):
    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            saved = await client.post("/videos", params={"url": "https://example.com/v.mp4"})
            media_id = saved.json()["media_id"]
            found = await client.get(f"/videos/{media_id}")
            missing = await client.get("/videos/missing")
        await db.get_async_engine().dispose()
        return found.json(), missing.json()

    assert asyncio.run(run()) == ({"title": "from the API"}, {"error": "NotFoundException"})


def slow_callbacks(caplog):
    return [r for r in caplog.records if r.name == "asyncio" and "Executing" in r.getMessage()]


def test_async_api__never_blocks_the_event_loop(db, caplog):
    """The queue's and the repositories' async calls, under asyncio's slow-callback detector.

    Debug mode logs every callback (a step of a coroutine) that holds the loop for more
    than 50 ms. A first round warms up (imports, connections, compiled statements);
    then a round must log nothing (of three at most: see below). A sleeping coroutine
    proves that the detector works.
    """
    from aana.sdk import AanaSDK

    aana = AanaSDK()

    @aana.task(endpoint="ep")
    def handler(data):
        return data

    async def round_of_calls() -> None:
        task_id = await aana.defer_async("ep", {"x": 1})
        await handler.defer_async({"x": 2})
        await aana.defer_many_async("ep", [{"n": n} for n in range(200)])
        await handler.defer_many_async([{"n": n} for n in range(10)])
        assert (await aana.get_task_async(task_id)).status == Status.CREATED
        assert (await aana.cancel_task_async(task_id)).status == Status.CANCELLED
        async with get_async_session() as session:
            videos = AsyncVideoRepository(session)
            media_id = (await videos.save(Video(url="https://example.com/v.mp4")))["media_id"]
            await videos.read(media_id)
            await videos.get_metadata(media_id)
            await AsyncMediaRepository(session).list(limit=20)
            await AsyncCaptionRepository(session).save_all(
                "m", ["c"] * 200, [0.5] * 200, list(range(200))
            )
            tasks = AsyncTaskRepository(session)
            claimed = await tasks.fetch_unprocessed_tasks(limit=5)
            await tasks.update_status(claimed[0].id, Status.COMPLETED, result={"ok": 1})
            await tasks.count()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        loop.slow_callback_duration = 60.0
        await round_of_calls()
        loop.slow_callback_duration = 0.05
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            # A call that waits on the database holds the loop in every round; a busy
            # machine's scheduling hiccup does not come back round after round.
            slow_rounds = []
            for _ in range(3):
                caplog.clear()
                await round_of_calls()
                slow_rounds.append([record.getMessage() for record in slow_callbacks(caplog)])
                if not slow_rounds[-1]:
                    break
            assert slow_rounds[-1] == [], slow_rounds
            time.sleep(0.1)  # the control: a sync call that holds the loop
            await asyncio.sleep(0)
            assert len(slow_callbacks(caplog)) == 1
        loop.slow_callback_duration = 60.0
        await db.get_async_engine().dispose()

    asyncio.run(run(), debug=True)
