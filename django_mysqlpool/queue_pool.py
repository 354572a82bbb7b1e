"""QueuePool that keeps the connections a burst opened, until they sit idle too long.

SQLAlchemy's QueuePool closes an overflow connection the moment it is given
back whenever pool_size connections are already idle. A site with more
threads than pool_size then closes and reopens connections on nearly every
request: the cost pooling exists to avoid. Here the idle queue holds up to
pool_size + max_overflow connections (the bound on open connections is
unchanged), and ManagedPool.retire_idle() closes those beyond min_idle once
they have been idle for idle_timeout. Connections are reused last-in,
first-out by default, so the ones a quiet period does not need sink to the
bottom and retire.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.pool import QueuePool
from sqlalchemy.util import queue as sqla_queue


class BurstKeepingQueuePool(QueuePool):
    def __init__(
        self,
        creator: Any,
        pool_size: int = 5,
        max_overflow: int = 10,
        timeout: float = 30.0,
        use_lifo: bool = True,
        **kw: Any,
    ) -> None:
        super().__init__(
            creator, pool_size=pool_size, max_overflow=max_overflow, timeout=timeout,
            use_lifo=use_lifo, **kw,
        )
        self._core_size = pool_size
        if pool_size > 0 and max_overflow > 0:
            # Room to keep every connection the bound allows; the overflow
            # counter still stops a checkout from opening one more.
            self._pool.maxsize = pool_size + max_overflow

    def size(self) -> int:
        return self._core_size

    def checkedout(self) -> int:
        # QueuePool derives this from the queue's capacity, which we widened:
        # open connections are size() + overflow(), minus the idle ones.
        return self._core_size + self._overflow - self._pool.qsize()

    def dispose(self) -> None:
        # QueuePool.dispose() resets the overflow counter as if nothing were
        # checked out; connections that are out would then not count against
        # the bound. Close the idle ones and count each one down instead.
        while True:
            try:
                record = self._pool.get(False)
            except sqla_queue.Empty:
                break
            record.close()
            self._dec_overflow()
        self.logger.info("Pool disposed. %s", self.status())

    def recreate(self) -> "BurstKeepingQueuePool":
        self.logger.info("Pool recreating")
        return self.__class__(
            self._creator,
            pool_size=self._core_size,
            max_overflow=self._max_overflow,
            pre_ping=self._pre_ping,
            use_lifo=self._pool.use_lifo,
            timeout=self._timeout,
            recycle=self._recycle,
            echo=self.echo,
            logging_name=self._orig_logging_name,
            reset_on_return=self._reset_on_return,
            _dispatch=self.dispatch,
            dialect=self._dialect,
        )
