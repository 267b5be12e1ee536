/* sl_signal: SIGTERM and SIGINT, taken synchronously.
 *
 * sl_signal_block blocks both signals (and ignores SIGPIPE) in the calling
 * thread; threads created afterwards inherit the mask, so call it first
 * thing in main, before any library starts a thread. sl_signal_watch then
 * starts one thread that waits for them with sigwait(3) and calls cb on that
 * thread, once per signal: no code ever runs inside a signal handler, so cb
 * may lock, log and allocate. sl_signal_unwatch stops and joins the thread.
 *
 * One watcher per process. */
#ifndef SL_SIGNAL_H
#define SL_SIGNAL_H

#include <stdbool.h>

typedef void (*sl_signal_cb)(void *closure, int sig);

void sl_signal_block(void);
bool sl_signal_watch(sl_signal_cb cb, void *closure);
void sl_signal_unwatch(void);

#endif
