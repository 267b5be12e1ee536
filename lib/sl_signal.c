/* sl_signal: see sl_signal.h. The watcher is cancelled rather than woken:
 * sigwait is a cancellation point, and nothing else it does can be
 * interrupted half-way, because cb runs with cancellation disabled. */
#include "sl_signal.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>

#include "sl_log.h"

static pthread_t watcher;
static bool watching;
static sl_signal_cb watch_cb;
static void *watch_closure;

static void stop_set(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
}

void sl_signal_block(void)
{
    sigset_t set;
    stop_set(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static void *watch_loop(void *arg)
{
    sigset_t set;
    int sig, old;

    (void)arg;
    stop_set(&set);
    for (;;) {
        if (sigwait(&set, &sig) != 0)
            continue;
        pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
        sl_log(SL_LOG_INFO, "%s received: finishing the batch in hand", strsignal(sig));
        watch_cb(watch_closure, sig);
        pthread_setcancelstate(old, NULL);
    }
    return NULL;
}

bool sl_signal_watch(sl_signal_cb cb, void *closure)
{
    watch_cb = cb;
    watch_closure = closure;
    watching = pthread_create(&watcher, NULL, watch_loop, NULL) == 0;
    return watching;
}

void sl_signal_unwatch(void)
{
    if (!watching)
        return;
    pthread_cancel(watcher);
    pthread_join(watcher, NULL);
    watching = false;
}
