/*
 * wdfusb shim: everything that differs between operating systems lives behind
 * this header (threads, clocks, loading a shared library, thread-local storage,
 * atomics). platform.c implements it for POSIX and for Windows.
 */
#ifndef WU_PLATFORM_H
#define WU_PLATFORM_H

#include <stddef.h>
#include <stdint.h>

#ifdef _WIN32
#include <windows.h>
typedef CRITICAL_SECTION wu_mutex;
typedef CONDITION_VARIABLE wu_cond;
typedef INIT_ONCE wu_once_t;
#define WU_ONCE_INIT INIT_ONCE_STATIC_INIT
#ifdef _MSC_VER
#define WU_THREAD_LOCAL __declspec(thread)
#else
#define WU_THREAD_LOCAL __thread
#endif
#define WU_CALLBACK WINAPI
#else
#include <pthread.h>
typedef pthread_mutex_t wu_mutex;
typedef pthread_cond_t wu_cond;
typedef pthread_once_t wu_once_t;
#define WU_ONCE_INIT PTHREAD_ONCE_INIT
#define WU_THREAD_LOCAL __thread
#define WU_CALLBACK
#endif

/* atomics on int-sized values only */
#if defined(_MSC_VER)
#define WU_LOAD(p) InterlockedCompareExchange((volatile LONG *)(p), 0, 0)
#define WU_STORE(p, v) InterlockedExchange((volatile LONG *)(p), (LONG)(v))
#define WU_ADD(p, v) InterlockedExchangeAdd((volatile LONG *)(p), (LONG)(v))
#else
#define WU_LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define WU_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define WU_ADD(p, v) __atomic_fetch_add((p), (v), __ATOMIC_ACQ_REL)
#endif

#define WU_NS_FOREVER INT64_MAX

void wu_mutex_init(wu_mutex *m);
void wu_mutex_destroy(wu_mutex *m);
void wu_mutex_lock(wu_mutex *m);
void wu_mutex_unlock(wu_mutex *m);
void wu_cond_init(wu_cond *c);
void wu_cond_destroy(wu_cond *c);
void wu_cond_broadcast(wu_cond *c);
/* Wait until woken or the monotonic clock reaches until_ns (WU_NS_FOREVER: no limit). */
void wu_cond_wait_until(wu_cond *c, wu_mutex *m, int64_t until_ns);
void wu_once(wu_once_t *once, void (*fn)(void));

int64_t wu_now_ns(void);      /* monotonic clock */

/* Shared libraries: NULL and a message in err on failure. */
void *wu_dl_open(const char *path, char *err, size_t errlen);
void *wu_dl_sym(void *lib, const char *name);
void wu_dl_close(void *lib);

/* fork(): a counter that a forked child increments (always 0 where there is no fork), and
   handlers run in the child, single-threaded, before it goes on (at most 8). */
int wu_fork_generation(void);
void wu_on_fork_child(void (*fn)(void));

/* Threads: started joinable; wu_thread_join waits and frees. */
struct wu_thread;
struct wu_thread *wu_thread_start(void *(*fn)(void *), void *arg);
void wu_thread_join(struct wu_thread *t);

/* A USB port's power switched off and on again, as an unplug and replug (Linux: the port's
   "disable" attribute in sysfs, kernel 4.20 on); bus and port numbers as libusb gives them. */
enum wu_port_result { WU_PORT_OK = 0, WU_PORT_UNSUPPORTED = 1, WU_PORT_DENIED = 2, WU_PORT_GONE = 3 };
int wu_port_power_cycle(uint8_t bus, const uint8_t *ports, int n_ports);

/* The driver of a bus's host controller, from sysfs (declared for Python in wdfusb_shim.h). */
int wu_bus_controller_driver(const char *sysfs, unsigned bus, char *name, size_t size);

#endif
