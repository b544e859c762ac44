"""Races between processes, each with its own engine, on both backends."""

import multiprocessing
from collections import Counter

from aana.configs.db import DbSettings
from aana.storage.repository import TaskRepository
from aana.storage.session import get_session
from tests.helpers import save_contested_video

SPAWN = multiprocessing.get_context("spawn")


def _use(db_config: dict) -> None:
    from aana.configs.settings import settings

    settings.db_config = DbSettings.model_validate(db_config)


def _save_video(db_config: dict, barrier, results) -> None:
    _use(db_config)
    results.put(save_contested_video(barrier))


def _claim_all(db_config: dict, barrier, results) -> None:
    _use(db_config)
    claimed = []
    with get_session() as session:
        repository = TaskRepository(session)
        barrier.wait()
        while tasks := repository.fetch_unprocessed_tasks(limit=5):
            claimed.extend(str(task.id) for task in tasks)
    results.put(claimed)


def _race(target, db: DbSettings, processes: int) -> list:
    config = db.model_dump(mode="json")
    barrier, results = SPAWN.Barrier(processes), SPAWN.Queue()
    workers = [
        SPAWN.Process(target=target, args=(config, barrier, results)) for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    return outcomes


def test_create__two_processes_racing_on_one_id_exactly_one_wins(db):
    assert sorted(_race(_save_video, db, 2)) == ["duplicate", "won"]


def test_fetch__four_processes_never_claim_the_same_task(db):
    with get_session() as session:
        repository = TaskRepository(session)
        expected = {str(repository.save("ep", {"n": n}).id) for n in range(400)}
    claims = [task for claimed in _race(_claim_all, db, 4) for task in claimed]
    assert Counter(claims).most_common(1)[0][1] == 1
    assert set(claims) == expected
