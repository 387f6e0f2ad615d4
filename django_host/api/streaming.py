"""A reply as Server-Sent Events.

The model never runs on the event loop: a worker thread of its own waits for the reply's
turn at the gate, iterates the ReplyStream and hands each piece to the loop through an
asyncio.Queue; the response's async iterator turns them into events. The thread is
started before the response is returned, so a reply whose response is never iterated
still finishes, is stored and frees its place.

A stop (POST …/stop) or a client disconnect (the iterator is closed or cancelled) calls
`ReplyStream.stop()`: the thread ends at the next piece, and ChatService stores what was
generated as partial.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable

from dziri.core.chat import ReplyStream
from dziri.core.errors import BackendError, DziriError
from dziri.core.models import Message

from ..errors import error_body
from ..host import Host, Ticket

log = logging.getLogger(__name__)

Emit = Callable[..., None]  # emit(kind, payload): hand an item to the event loop
KEEPALIVE_S = 15.0  # a comment line while waiting, so that proxies keep the connection open


def event(name: str, data: dict) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def message_json(message: Message | None) -> dict | None:
    return None if message is None else message.model_dump(mode="json", exclude={"user_id"})


def start_worker(host: Host, ticket: Ticket, name: str, produce: Callable[[Emit], tuple[str, object]], *,
                 stop: Callable[[], None], skip: Callable[[], None], release: Callable[[], None] = lambda: None
                 ) -> asyncio.Queue:
    """Run `produce(emit)` in a worker thread of its own once the ticket's turn comes, and
    return the queue through which its (kind, payload) items reach the event loop: each
    `emit("token", piece)`, then what `produce` returns, or ("error", DziriError).
    `skip()` runs instead of `produce` when the client left while waiting, `stop()` when
    the loop is gone, and the ticket and `release()` are freed before the outcome is sent."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue()

    def emit(kind: str, payload: object = None) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, payload))
        except RuntimeError:  # the loop is gone (server shutting down): nobody is listening
            stop()

    def work() -> None:
        outcome = None
        try:
            if not ticket.wait_turn():
                skip()
                return
            outcome = produce(emit)
        except DziriError as exc:
            outcome = ("error", exc)
        except Exception as exc:  # the services wrap backend failures; this is a bug or a store failure
            log.exception("reply failed")
            outcome = ("error", BackendError(f"the reply failed: {type(exc).__name__}"))
        finally:
            # Free the place (and the conversation) before saying so: a client that sends its
            # next message the moment it reads the end must not find this reply still running.
            ticket.release()
            release()
            if outcome is not None:
                emit(*outcome)

    host.start_worker(work, name=name)
    return queue


def start_reply(host: Host, stream: ReplyStream, ticket: Ticket, key: tuple[str, str]) -> AsyncIterator[bytes]:
    """Start generating in a worker thread; return the events for the response."""

    def produce(emit: Emit) -> tuple[str, object]:
        with stream:  # closes the generator (and so frees the backend) even on failure
            for piece in stream:
                emit("token", piece)
        return "done", stream.message

    # The client left while waiting: closing the stream makes ChatService record the stop.
    queue = start_worker(host, ticket, f"dziri-reply-{key[1][:12]}", produce, stop=stream.stop, skip=stream.close,
                         release=lambda: host.streams.release(key))
    return _events(stream, ticket, queue)


async def _events(stream: ReplyStream, ticket: Ticket, queue: asyncio.Queue) -> AsyncIterator[bytes]:
    try:
        if stream.user_message is not None:
            yield event("user_message", message_json(stream.user_message))
        while True:
            try:
                kind, payload = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                yield b": waiting\n\n"
                continue
            if kind == "token":
                yield event("token", {"text": payload})
            elif kind == "done":
                yield event("done", {"message": message_json(payload)})
                return
            elif kind == "error":
                # stream.message is set by now: the reply's generator stores it as it ends.
                body = {**error_body(payload.code, str(payload)), "message": message_json(stream.message)}
                yield event("error", body)
                return
    finally:
        # The end, a stop, or the client gone (aclose() or cancellation): either way the
        # thread must not go on generating for nobody. Harmless after a normal end.
        stream.stop()
        ticket.cancel()
