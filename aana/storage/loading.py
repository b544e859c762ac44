"""Entities from rows read without the ORM's loader, registered as the loader would.

Used where rows come back faster than a query would return them (bulk inserts, the task
queue's statements on the driver): the entities are persistent and clean in the
session's identity map, the very objects ``session.get`` returns afterwards.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

from sqlalchemy.orm import Mapper, Session
from sqlalchemy.orm.attributes import instance_state


@cache
def _primary_key_index(mapper: Mapper[Any], keys: tuple[str, ...]) -> int:
    (pk_column,) = mapper.primary_key
    return keys.index(mapper.get_property_by_column(pk_column).key)


def load_entities(
    session: Session,
    mapper: Mapper[Any],
    keys: Sequence[str],
    rows: Iterable[Sequence[Any]],
    inserted: bool = False,
) -> list[Any]:
    """The entities holding ``rows`` (values of the attributes ``keys``), in row order.

    ``keys`` must include the primary key. An entity of the same identity already in the
    session is refreshed in place, as a query with ``populate_existing`` would; otherwise
    a new one is made without ``__init__``. Only for sessions without pending changes:
    a refreshed entity drops its own unsaved changes. With ``inserted``, the rows were
    just inserted, so none can be in the session: the look-up is skipped.
    """
    pk_index = _primary_key_index(mapper, tuple(keys))  # a tuple: no copy
    manager = mapper.class_manager
    entity_class: Any = mapper.class_
    new_object = entity_class.__new__
    new_state = manager._state_constructor
    attach_state = manager._state_setter
    identity_map = session.identity_map
    add_to_identity_map = identity_map._add_unpresent
    session_key = session.hash_key
    entities: list[Any] = []
    # Thousands of new objects set off the cyclic garbage collector again and again,
    # each time walking all of them (it doubled a 100,000-row bulk insert); none of them
    # is garbage, so it waits until they are all made.
    collecting = gc.isenabled()
    gc.disable()
    try:
        # What the ORM's loader does for each row (sqlalchemy.orm.loading): an existing
        # state gets the values and forgets what it had expired or changed; a new state gets
        # its identity key, is attached to the session and enters the identity map.
        for row in rows:
            identity_key = (entity_class, (row[pk_index],), None)
            entity = None if inserted else identity_map.get(identity_key)
            if entity is not None:
                state = instance_state(entity)
                state.dict.update(zip(keys, row, strict=True))
                state._commit_all(state.dict, identity_map)
            else:
                entity = new_object(entity_class)
                entity.__dict__.update(zip(keys, row, strict=True))
                state = new_state(entity, manager)
                attach_state(entity, state)
                state.key = identity_key
                state.session_id = session_key
                add_to_identity_map(state, identity_key)
            entities.append(entity)
    finally:
        if collecting:
            gc.enable()
    return entities
