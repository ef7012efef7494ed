"""The ETL's live path: features of the *active* segment, published as its journals are flushed.

How (DESIGN decision 14, docs/live.md "How live rows are computed"):

- The live engines start from the checkpoint -- the historical engines' state after
  the last finished segment -- and only once no segment waits in ready/ or
  processing/, so they continue exactly where the historical path will.
- Each step reads the complete batches appended to the active segment's journals
  since the last one (`JournalTail`: the scanner recovery uses, never a torn tail),
  feeds them as one chunk through a `SegmentFeeder` (the same code, kernels, merge and
  watermark as the segment job), writes the chunk's row counts to the segment's live
  log (etl/chunk_log.py) and only then returns its rows for publishing.  The segment
  job later feeds the finished segment in the logged chunks, so every published row
  is the row that lands in Parquet.
- At a rotation -- the collector has begun a later segment, which it does only after
  its last write to this one's journals -- the rest of the journals is fed as one
  more chunk and the segment finished at once (not once its Parquet files exist); the segment
  job takes its rows and snapshot (`handover`) if the Parquet rows match, the engines go on.
- When the segment job has finished a segment the live path had not (`segment_done`), the rows it
  produced that the live path had not published -- the tail after the last chunk
  and what the watermark released at the segment's end, or a whole segment that
  finished while the ETL was catching up -- are published from its result, before
  the live path begins the next segment (a stream's rows go out in time order).
- After an ETL restart (or an error in the live path) the engines restart from the checkpoint and
  the active segment's logged chunks are fed again: their rows go out again with replay=True.

Nothing here touches the historical path's state: it keeps a snapshot of the live engines.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from ..bronze.journal import JournalTail
from ..bronze.schemas import CHANNEL_SCHEMAS, channel_file
from ..bronze.segments import MANIFEST, SegmentId
from ..features import table_blocks
from ..logs import get_logger
from . import chunk_log, live_seed
from .bronze_reader import Key, SegmentReader
from .engines import FeatureOutput
from .live_latency import LatencyWindow
from .segment_feed import Product, SegmentFeeder, pieces, products
from .live_rows import Publication, landed_parts, live_products, live_table, unpublished
from .segment_job import BOOK_BATCH_ROWS, Handover, feed_logged

log = get_logger("fluxforge.etl.live")
MAX_FAILURES = 3  # errors on one segment before the live path leaves it to the segment job


@dataclass
class LiveCounters:
    chunks: int = 0
    rows: int = 0
    replayed_rows: int = 0
    errors: int = 0
    not_landed: int = 0  # rows published live of a segment that then went to failed/


@dataclass
class _Following:
    seg_dir: Path
    feeder: SegmentFeeder
    tails: dict[str, JournalTail]
    log_path: Path
    checkpoint: str | None  # the checkpoint's last segment the engines started from
    published: dict[tuple[Key, Product], int] = field(default_factory=dict)


@dataclass
class _Finished:
    """A rotated segment the live path finished itself, before the segment job processed it."""
    name: str
    handover: Handover
    checkpoint: str | None  # the checkpoint its engines started from (handover.state: where the next start)
    bank_taken: bool = False  # the next segment's engines are its bank's own (once: they change as they go)


class LiveFollower:
    """Follows the active segment of `runner`'s store; call `step()` and `segment_done()` under the
    lock the segment job takes to claim a segment (the service's), never concurrently with it."""

    def __init__(self, runner, max_rows: int = BOOK_BATCH_ROWS):
        self.runner = runner
        self.max_rows = max_rows
        self.current: _Following | None = None
        self.finished: _Finished | None = None
        self.published: dict[str, dict[tuple[Key, Product], int]] = {}  # segment -> rows published
        self.failures: dict[str, int] = {}
        self.counters = LiveCounters()
        self.latency = LatencyWindow()
        self.counted = runner.checkpoint.last_segment  # the last committed segment `segment_done` was told of

    # -- following ------------------------------------------------------------------
    def quiet(self) -> bool:
        """Whether `step()` would find nothing: a followed segment whose journals have not grown.
        A stat per journal and a look at active/, cheap enough for the event loop: between two
        collector flushes the service then skips the step and its trip to a worker thread."""
        cur = self.current
        if cur is None:
            return False
        try:
            grown = any(t.path.stat().st_size > t.offset for t in cur.tails.values())
        except OSError:  # gone (rotated) or unreadable: the step deals with it
            return False
        return not grown and not self._rotated_away(cur)

    def step(self) -> list[Publication]:
        """Publish what the active segment's new batches made final (begin following one if due)."""
        if self.current is None:
            seg_dir = self._pick()
            if seg_dir is None:
                return []
            pubs = self._begin(seg_dir)
            # the flushes written to it since the rotation: now, not at the collector's next flush mark
            return pubs + self.step() if self.current is not None else pubs
        cur = self.current
        closed = self._rotated_away(cur)  # looked at BEFORE reading: then the read gets every batch
        marks = {c: (t.offset, t.rows) for c, t in cur.tails.items()}
        try:
            new = {c: t.read(None if closed else self.max_rows) for c, t in cur.tails.items()}
        except FileNotFoundError:  # rotated: finish it as the segment job will, go on with the next
            for c, (offset, rows) in marks.items():  # batches read before another journal was
                cur.tails[c].offset, cur.tails[c].rows = offset, rows  # gone: fed from the Parquet file
            return self._finish_rotated(cur)
        if closed:  # rotated, its journals complete: finish it now, not once its Parquet files exist
            return self._finish_closed(cur, marks, new)
        if not any(new.values()):
            return []
        outputs = self._feed(new)
        chunk_log.append(cur.log_path, {c: t.rows for c, t in cur.tails.items()})
        self.counters.chunks += 1
        return self._publications(cur, outputs, replay=False)

    def reset(self, error: BaseException | None = None) -> None:
        """After an error: forget the live engines; the next step restarts from the checkpoint."""
        if error is not None:
            self.counters.errors += 1
            if self.current is not None:
                name = self.current.seg_dir.name
                self.failures[name] = self.failures.get(name, 0) + 1
                if self.failures[name] >= MAX_FAILURES:
                    log.error("live_segment_given_up", segment=name, errors=self.failures[name],
                              note="its rows are published when the segment job has processed it")
        self._detach()

    def _finish_rotated(self, cur: _Following) -> list[Publication]:
        """The collector finished the followed segment: feed the batches written after the last
        look from its Parquet file and finish it (exactly the segment job's rest chunk and end),
        publish those rows now, and keep the engines' state for the next segment -- no waiting
        for the segment job, which then only writes the parts (`handover`)."""
        name = cur.seg_dir.name
        ready = self.runner.store.path("ready", name)
        if not (ready / MANIFEST).is_file():
            if not cur.seg_dir.exists() and not ready.exists():
                self._detach()  # gone elsewhere (failed/): the segment job decides
            return []  # still being finished by the collector
        return self._finish(cur, ready)

    def _finish(self, cur: _Following, seg_dir: Path) -> list[Publication]:
        """Feed the rest of the finished segment `seg_dir` (ready/ or, claimed, processing/) to the
        followed engines and finish it; its last rows; `self.finished` set for the segment job."""
        name = cur.seg_dir.name
        reader = SegmentReader(seg_dir)
        reader.manifest = json.loads((seg_dir / MANIFEST).read_text())
        rows = chunk_log.channel_rows(reader.manifest)
        ends = {c: t.rows for c, t in cur.tails.items()}
        self._detach()
        if any(rows[c] < ends[c] for c in chunk_log.CHANNELS):
            log.warning("live_chunks_mismatch", segment=name, rows=rows, read=ends)
            return []
        logged = cur.feeder.row_counts()
        feed_logged(cur.feeder, reader, [], rows, BOOK_BATCH_ROWS, start=ends)
        return self._seal(cur, ends, logged, rows)

    def _finish_closed(self, cur: _Following, marks: dict, rest: dict[str, list]) -> list[Publication]:
        """The collector rotated away from the followed segment (`_rotated_away`): `rest`, every
        batch its journals hold after `marks`, is fed as the one chunk the segment job will feed
        after the logged ones, and the segment finished -- without waiting for the collector to
        write its Parquet files (a second or more for an hour of books on a Pi, and every row the
        watermark held at the rotation waited for it).  The segment job checks that its Parquet
        files hold exactly these rows before it takes the result (`run_segment`)."""
        ends = {c: rows for c, (_, rows) in marks.items()}
        logged = cur.feeder.row_counts()
        self._feed(rest)
        self._detach()
        return self._seal(cur, ends, logged, {c: t.rows for c, t in cur.tails.items()})

    def _seal(self, cur: _Following, ends: dict, logged: dict, rows: dict) -> list[Publication]:
        """Finish the followed segment's feeder, fed through `rows`; its rows not yet published."""
        cur.feeder.finish()
        chunk_log.append_finished(cur.log_path)  # before its last rows reach the hub
        pubs = unpublished(cur.feeder.held, cur.published, {})
        self.finished = _Finished(cur.seg_dir.name, Handover(cur.feeder, ends, logged, cur.feeder.bank.snapshot(), rows,
                                                             cur.feeder.totals()), cur.checkpoint)
        return pubs

    def _rotated_away(self, cur: _Following) -> bool:
        """Whether the collector has begun a later segment: it does so only after its last write to
        the followed one's journals (collector/writer.py `rotate`), which are then complete."""
        me = SegmentId.parse(cur.seg_dir.name)
        return any(me.precedes(SegmentId.parse(p.name)) for p in self.runner.store.list("active"))

    def _pick(self) -> Path | None:
        store = self.runner.store
        active = store.list("active")
        waiting = [p.name for p in store.list("ready") + store.list("processing")]
        fin = self.finished.name if self.finished is not None else None
        active = [p for p in active if p.name != fin]  # (finished from its journals, still being written out)
        if not active or any(w != fin for w in waiting):
            return None  # the segment job first: the live engines start from its checkpoint
        if fin is None and self.runner.checkpoint.last_segment != self.counted:
            return None  # the job's rows of the segment it just committed go out first (`segment_done`)
        seg_dir = active[0]
        if self.failures.get(seg_dir.name, 0) >= MAX_FAILURES:
            return None
        if chunk_log.finished(chunk_log.state_path(self.runner.state_dir, seg_dir.name)):
            return None  # finished from its journals by a previous process: the job publishes it, as replays
        last = fin or self.runner.checkpoint.last_segment
        if last and SegmentId.is_segment_name(last) and not SegmentId.parse(last).precedes(SegmentId.parse(seg_dir.name)):
            return None
        return seg_dir

    def _begin(self, seg_dir: Path) -> list[Publication]:
        fin = self.finished
        if fin is not None and not fin.bank_taken:  # its engines go on (a restore took ~15 % of the live CPU)
            bank, fin.bank_taken = fin.handover.feeder.bank, True
        else:  # (an error or a restart since: that bank has moved on, or there is none)
            bank = self.runner.bank.restored(fin.handover.state if fin is not None else self.runner.checkpoint.symbols)
        start = fin.name if fin is not None else self.runner.checkpoint.last_segment
        tails = {c: JournalTail(seg_dir / channel_file(c, finished=False), CHANNEL_SCHEMAS[c])
                 for c in chunk_log.CHANNELS}
        log_path = chunk_log.state_path(self.runner.state_dir, seg_dir.name)
        # the outputs held until the segment job writes them: older blocks in a scratch file beside the log
        feeder = SegmentFeeder(bank, seg_dir.name, spill=table_blocks.Spill(log_path.parent))
        cur = self.current = _Following(seg_dir, feeder, tails, log_path, start)
        self.published[seg_dir.name] = cur.published
        logged = chunk_log.read(cur.log_path)
        log.info("live_following", segment=seg_dir.name, after=start, replaying_chunks=len(logged))
        pubs: list[Publication] = []
        try:
            for ends in logged:  # fed before (ETL restart or an error): same rows, flagged as replays
                batches = {c: self._read_exact(tails[c], ends[c]) for c in chunk_log.CHANNELS}
                pubs += self._publications(cur, self._feed(batches), replay=True)
        except FileNotFoundError:
            self._detach()
            self.published.pop(seg_dir.name, None)  # nothing of it was published: the job publishes all
            return []
        return pubs

    def _read_exact(self, tail: JournalTail, end: int) -> list[pa.RecordBatch]:
        batches = []
        while tail.rows < end:
            got = tail.read(max_rows=1)
            if not got:
                raise ValueError(f"{tail.path.name}: {tail.rows} rows, the live log says {end}")
            batches += got
        if tail.rows != end:
            raise ValueError(f"{tail.path.name}: a logged chunk ends inside a batch")
        return batches

    def _feed(self, batches: dict[str, list[pa.RecordBatch]]) -> dict[Key, FeatureOutput]:
        """Feed each channel's batches, read from the journals, as one chunk."""
        tables = {c: pa.Table.from_batches(b, CHANNEL_SCHEMAS[c]) if b else None for c, b in batches.items()}
        return self.current.feeder.feed_chunk(pieces(tables["orderbook"], BOOK_BATCH_ROWS),
                                              tables["trades"], tables["events"], tables["ticker"])

    def _detach(self) -> None:
        self.current = None

    def _publications(self, cur: _Following, outputs: dict[Key, FeatureOutput], replay: bool) -> list[Publication]:
        """A chunk's rows, a publication per product with all its symbols' rows (live_rows.live_products)."""
        pubs = []
        for product, table, sizes in live_products({(key, product): t for key, out in outputs.items()
                                                    for product, t in products(out)}):
            for key, n in sizes:
                cur.published[(key, product)] = cur.published.get((key, product), 0) + n
            pubs.append(Publication(product, table, replay, sizes))
        return pubs

    # -- the segment job's results ----------------------------------------------------
    def handover(self, seg_dir: Path) -> tuple[Handover | None, list[Publication]]:
        """For the segment job that just claimed `seg_dir`: the live engines that fed it from the
        job's checkpoint, with the segment finished (if the live path had not seen the rotation
        yet, the rest is fed from the claimed files now, and its last rows returned to publish),
        so the job only writes the parts and the live path starts on the next segment at once
        instead of waiting for them; (None, []) if the live path did not follow it from there."""
        name = seg_dir.name
        checkpoint = self.runner.checkpoint.last_segment
        pubs: list[Publication] = []
        cur = self.current
        if cur is not None and cur.seg_dir.name == name:
            if cur.checkpoint != checkpoint:
                self._detach()
                return None, []
            pubs = self._finish(cur, seg_dir)
        fin = self.finished
        if fin is not None and fin.name == name and fin.checkpoint == checkpoint:
            return fin.handover, pubs
        return None, pubs

    def segment_done(self, outcome) -> list[Publication]:
        """The rows of a segment the segment job just finished that were not published live."""
        name = outcome.segment
        self.counted = self.runner.checkpoint.last_segment  # first: an error below must not hold `_pick` back
        if self.current is not None and self.current.seg_dir.name == name:
            self._detach()
        followed = name in self.published  # this process followed it: it published all it had seen
        published = self.published.pop(name, {})
        self.failures.pop(name, None)
        fin = self.finished
        # the segment job's state after it is not the live engines' (it did not land, or it was
        # computed again because the live path's finish was fed other rows than it holds)
        diverged = outcome.state != "done" or (outcome.result is not None and outcome.result.handover_refused)
        if fin is not None and diverged and fin.checkpoint == name:
            # the live path finished the next segment too, from where the segment job now is not
            log.warning("live_restart", segment=fin.name, note=f"{name} did not land as the live path had it")
            self.finished = None
            self._detach()
        elif fin is not None and fin.name == name:
            self.finished = None
            if diverged and self.current is not None and self.current.checkpoint == name:
                log.warning("live_restart", segment=self.current.seg_dir.name,
                            note=f"{name} did not land as the live path had it")
                self._detach()  # its engines started from where the segment job now is not
        result = outcome.result
        if outcome.state != "done" or result is None or result.outputs is None:
            lost = sum(published.values())
            if lost:
                self.counters.not_landed += lost
                log.warning("live_rows_not_landed", segment=name, rows=lost, state=outcome.state)
            return []
        # What a previous process may have published: nothing beyond `published` if this one followed
        # the segment (it replayed the chunks logged before it began); else the logged chunks' rows, or
        # all of them if that process finished the segment itself.
        if followed:
            maybe = {}
        elif chunk_log.finished(self.runner.store.path("done", name) / chunk_log.SEGMENT_FILE):
            maybe = None
        else:
            maybe = result.logged_counts
        pubs = unpublished(result.outputs, published, maybe)
        replays = sum(p.table.num_rows for p in pubs if p.replay)
        if replays:
            log.info("live_segment_replays", segment=name, rows=replays, finished_before=maybe is None,
                     note="rows of a segment a previous process may have published, sent again flagged replay")
        result.outputs = None
        return pubs

    def published_through(self, segment: str) -> None:
        """Every row of `segment` is with the hub (a restart need not send any of it again)."""
        chunk_log.mark_published(self.runner.state_dir, segment)

    def _unsent_last(self) -> str | None:
        """The checkpoint's last segment if not all of its rows are known to have reached the hub."""
        last = self.runner.checkpoint.last_segment
        return last if last and chunk_log.last_published(self.runner.state_dir) != last else None

    def restart_replay(self) -> list[Publication]:
        """At start-up: the checkpoint's last segment, if the previous run may have stopped between
        its checkpoint and handing its last rows to the hub -- all of its rows, as replays."""
        last = self._unsent_last()
        if last is None:
            return []
        pubs = [Publication(product, live_table(key, [table]), True, [(key, table.num_rows)])
                for product, key, table in landed_parts(self.runner.features_dir, last)]
        log.info("live_replaying_last_segment", segment=last, publications=len(pubs))
        self.published_through(last)
        return pubs

    def recent_landed(self, minutes: float, now_ms: int | None = None) -> list[Publication]:
        """At start-up, for the hub's replay ring: the landed rows of the last `minutes` that this
        process will not publish again (etl/live_seed.py), flagged replay."""
        store = self.runner.store
        exclude = {p.name for state in ("active", "ready", "processing") for p in store.list(state)}
        if (last := self._unsent_last()) is not None:
            exclude.add(last)  # restart_replay sends it
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        return live_seed.recent_parts(self.runner.features_dir, exclude, now_ms - int(minutes * 60_000), now_ms)

    def note_published(self, pubs: list[Publication], now_s: float) -> None:
        """Count what the hub received; hf rows give the event-to-publish latency."""
        for p in pubs:
            if p.replay:
                self.counters.replayed_rows += p.table.num_rows
                continue
            self.counters.rows += p.table.num_rows
            if p.product == "hf":
                self.latency.add_rows(p.table, now_s)

    def status(self) -> str:
        """STATUS= part: `live <latency>` (and errors when any)."""
        text = "live " + self.latency.summary()
        if self.counters.errors:
            text += f", {self.counters.errors} live error(s)"
        return text
