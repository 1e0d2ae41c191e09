/* wdfusb shim: the operating-system layer (see platform.h). */
#include "platform.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32

void wu_mutex_init(wu_mutex *m) { InitializeCriticalSection(m); }
void wu_mutex_destroy(wu_mutex *m) { DeleteCriticalSection(m); }
void wu_mutex_lock(wu_mutex *m) { EnterCriticalSection(m); }
void wu_mutex_unlock(wu_mutex *m) { LeaveCriticalSection(m); }
void wu_cond_init(wu_cond *c) { InitializeConditionVariable(c); }
void wu_cond_destroy(wu_cond *c) { (void)c; }
void wu_cond_broadcast(wu_cond *c) { WakeAllConditionVariable(c); }

/* Windows timers tick every 15.6 ms unless a process asks for 1 ms (since Windows 10 2004
   the request is per process). Paced virtual transfers last about a millisecond, so ask
   once, through winmm loaded at run time (no import library needed). */
static BOOL CALLBACK fine_timer_once(PINIT_ONCE once, PVOID param, PVOID *ctx)
{
    HMODULE winmm = LoadLibraryA("winmm.dll");
    FARPROC begin = winmm ? GetProcAddress(winmm, "timeBeginPeriod") : NULL;
    (void)once; (void)param; (void)ctx;
    if (begin) ((UINT(WINAPI *)(UINT))(void (*)(void))begin)(1);
    return TRUE;
}

void wu_cond_wait_until(wu_cond *c, wu_mutex *m, int64_t until_ns)
{
    static INIT_ONCE fine_timer = INIT_ONCE_STATIC_INIT;
    DWORD ms = INFINITE;
    if (until_ns != WU_NS_FOREVER) {
        int64_t left = until_ns - wu_now_ns();
        if (left < 2000000) { /* a 1 ms wait may take 2: let others run; the caller checks again */
            LeaveCriticalSection(m);
            SwitchToThread();
            EnterCriticalSection(m);
            return;
        }
        /* whole milliseconds less one (a wait may end a tick late); the caller loops for the rest */
        ms = left / 1000000 >= INFINITE ? INFINITE - 1 : (DWORD)(left / 1000000) - 1;
        InitOnceExecuteOnce(&fine_timer, fine_timer_once, NULL, NULL);
    }
    SleepConditionVariableCS(c, m, ms);
}

static BOOL CALLBACK once_trampoline(PINIT_ONCE once, PVOID fn, PVOID *ctx)
{
    (void)once; (void)ctx;
    ((void (*)(void))fn)();
    return TRUE;
}

void wu_once(wu_once_t *once, void (*fn)(void)) { InitOnceExecuteOnce(once, once_trampoline, (PVOID)fn, NULL); }

int64_t wu_now_ns(void)
{
    static LARGE_INTEGER freq;
    LARGE_INTEGER now;
    if (!freq.QuadPart) QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&now);
    /* exact in integers: whole seconds, then the remainder (no overflow for centuries) */
    return (int64_t)(now.QuadPart / freq.QuadPart) * 1000000000 +
           (int64_t)(now.QuadPart % freq.QuadPart) * 1000000000 / freq.QuadPart;
}

void *wu_dl_open(const char *path, char *err, size_t errlen)
{
    HMODULE h = LoadLibraryA(path);
    if (!h && err) { /* "<path>: <system message> (error N)", as dlerror() names the path */
        DWORD code = GetLastError();
        char msg[256] = "";
        DWORD n = FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL, code, 0, msg,
                                 sizeof msg, NULL);
        while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r' || msg[n - 1] == ' ' || msg[n - 1] == '.')) msg[--n] = 0;
        snprintf(err, errlen, "%s: %s (error %lu)", path, n ? msg : "LoadLibrary failed", (unsigned long)code);
    }
    return (void *)h;
}

void *wu_dl_sym(void *lib, const char *name) { return (void *)GetProcAddress((HMODULE)lib, name); }
void wu_dl_close(void *lib) { FreeLibrary((HMODULE)lib); }

struct wu_thread {
    HANDLE h;
    void *(*fn)(void *);
    void *arg;
};

static DWORD WINAPI thread_trampoline(LPVOID p)
{
    struct wu_thread *t = p;
    t->fn(t->arg);
    return 0;
}

struct wu_thread *wu_thread_start(void *(*fn)(void *), void *arg)
{
    struct wu_thread *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->fn = fn;
    t->arg = arg;
    t->h = CreateThread(NULL, 0, thread_trampoline, t, 0, NULL);
    if (!t->h) {
        free(t);
        return NULL;
    }
    return t;
}

void wu_thread_join(struct wu_thread *t)
{
    if (!t) return;
    WaitForSingleObject(t->h, INFINITE);
    CloseHandle(t->h);
    free(t);
}

int wu_fork_generation(void) { return 0; }
void wu_on_fork_child(void (*fn)(void)) { (void)fn; }

int wu_port_power_cycle(uint8_t bus, const uint8_t *ports, int n_ports)
{
    (void)bus; (void)ports; (void)n_ports;
    return WU_PORT_UNSUPPORTED; /* WinUSB has no port cycle for a program */
}

int wu_bus_controller_driver(const char *sysfs, unsigned bus, char *name, size_t size)
{
    (void)sysfs; (void)bus;
    if (size) name[0] = '\0';
    return 0; /* not known here */
}

#else

#include <dlfcn.h>
#include <time.h>

void wu_mutex_init(wu_mutex *m) { pthread_mutex_init(m, NULL); }
void wu_mutex_destroy(wu_mutex *m) { pthread_mutex_destroy(m); }
void wu_mutex_lock(wu_mutex *m) { pthread_mutex_lock(m); }
void wu_mutex_unlock(wu_mutex *m) { pthread_mutex_unlock(m); }

void wu_cond_init(wu_cond *c)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
#ifndef __APPLE__
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
#endif
    pthread_cond_init(c, &attr);
    pthread_condattr_destroy(&attr);
}

void wu_cond_destroy(wu_cond *c) { pthread_cond_destroy(c); }
void wu_cond_broadcast(wu_cond *c) { pthread_cond_broadcast(c); }

void wu_cond_wait_until(wu_cond *c, wu_mutex *m, int64_t until_ns)
{
    struct timespec ts;
    if (until_ns == WU_NS_FOREVER) {
        pthread_cond_wait(c, m);
        return;
    }
#ifdef __APPLE__
    int64_t left = until_ns - wu_now_ns();
    if (left < 0) left = 0;
    ts.tv_sec = (time_t)(left / 1000000000);
    ts.tv_nsec = (long)(left % 1000000000);
    pthread_cond_timedwait_relative_np(c, m, &ts);
#else
    ts.tv_sec = (time_t)(until_ns / 1000000000);
    ts.tv_nsec = (long)(until_ns % 1000000000);
    pthread_cond_timedwait(c, m, &ts);
#endif
}

void wu_once(wu_once_t *once, void (*fn)(void)) { pthread_once(once, fn); }

int64_t wu_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void *wu_dl_open(const char *path, char *err, size_t errlen)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h && err) snprintf(err, errlen, "%s", dlerror());
    return h;
}

void *wu_dl_sym(void *lib, const char *name) { return dlsym(lib, name); }
void wu_dl_close(void *lib) { dlclose(lib); }

struct wu_thread {
    pthread_t t;
};

struct wu_thread *wu_thread_start(void *(*fn)(void *), void *arg)
{
    struct wu_thread *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    if (pthread_create(&t->t, NULL, fn, arg) != 0) {
        free(t);
        return NULL;
    }
    return t;
}

void wu_thread_join(struct wu_thread *t)
{
    if (!t) return;
    pthread_join(t->t, NULL);
    free(t);
}

/* fork: only the forking thread lives on in the child; every thread the engine started
   (event threads) is gone and any lock they held stays held. The handlers reset what the
   child may use again; objects from before the fork are refused by generation. */
static int fork_gen;
static void (*fork_handlers[8])(void);
static int n_fork_handlers;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t fork_lock = PTHREAD_MUTEX_INITIALIZER;

static void on_fork_child(void)
{
    pthread_mutex_init(&fork_lock, NULL);
    WU_ADD(&fork_gen, 1);
    for (int i = 0; i < n_fork_handlers; i++) fork_handlers[i]();
}

static void register_atfork(void) { pthread_atfork(NULL, NULL, on_fork_child); }

int wu_fork_generation(void) { return WU_LOAD(&fork_gen); }

void wu_on_fork_child(void (*fn)(void))
{
    pthread_once(&fork_once, register_atfork);
    pthread_mutex_lock(&fork_lock);
    if (n_fork_handlers < 8) fork_handlers[n_fork_handlers++] = fn;
    pthread_mutex_unlock(&fork_lock);
}

#ifdef __linux__
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <time.h>
#include <unistd.h>

/* One write to the port's "disable" attribute: '1' disconnects the device and switches the
   port's power off; '0' switches it on, and the hub enumerates what is plugged in. */
static int write_port_disable(const char *path, char value)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC), err;
    ssize_t n;
    if (fd < 0) {
        err = errno;
        if (err == EACCES || err == EPERM || err == EROFS) return WU_PORT_DENIED;
        return err == ENOENT ? WU_PORT_UNSUPPORTED : WU_PORT_GONE;
    }
    do n = write(fd, &value, 1); while (n < 0 && errno == EINTR);
    err = n == 1 ? 0 : errno;
    close(fd);
    if (!err) return WU_PORT_OK;
    return err == EACCES || err == EPERM ? WU_PORT_DENIED : WU_PORT_GONE;
}

int wu_port_power_cycle(uint8_t bus, const uint8_t *ports, int n_ports)
{
    char link[128], port[PATH_MAX + 16];
    struct timespec off = {0, 100 * 1000 * 1000}; /* as long as a hub's debounce: it sees a replug */
    int len = snprintf(link, sizeof link, "/sys/bus/usb/devices/%u-", (unsigned)bus), rc;
    if (n_ports < 1 || n_ports > 7) return WU_PORT_UNSUPPORTED;
    for (int i = 0; i < n_ports; i++)
        len += snprintf(link + len, sizeof link - (size_t)len, i ? ".%u" : "%u", (unsigned)ports[i]);
    snprintf(link + len, sizeof link - (size_t)len, "/port");
    /* the port itself (its hub's child): the device's directory goes with the device */
    if (!realpath(link, port)) return errno == ENOENT ? WU_PORT_UNSUPPORTED : WU_PORT_GONE;
    strcat(port, "/disable");
    rc = write_port_disable(port, '1');
    if (rc != WU_PORT_OK) return rc;
    while (nanosleep(&off, &off) != 0 && errno == EINTR) {
    }
    return write_port_disable(port, '0');
}

int wu_bus_controller_driver(const char *sysfs, unsigned bus, char *name, size_t size)
{
    /* The root hub usbBUS is a child of its host controller's device; that device's "driver"
       link names the controller's driver: ../../../bus/platform/drivers/vhci_hcd. */
    char link[PATH_MAX], target[PATH_MAX];
    const char *base;
    ssize_t n;
    if (!size) return 0;
    name[0] = '\0';
    if (snprintf(link, sizeof link, "%s/bus/usb/devices/usb%u/../driver", sysfs, bus) >= (int)sizeof link) return 0;
    n = readlink(link, target, sizeof target - 1);
    if (n <= 0) return 0;
    target[n] = '\0';
    base = strrchr(target, '/');
    base = base ? base + 1 : target;
    snprintf(name, size, "%s", base);
    return (int)strlen(name);
}
#else
int wu_port_power_cycle(uint8_t bus, const uint8_t *ports, int n_ports)
{
    (void)bus; (void)ports; (void)n_ports;
    return WU_PORT_UNSUPPORTED; /* macOS: no port power for a program */
}

int wu_bus_controller_driver(const char *sysfs, unsigned bus, char *name, size_t size)
{
    (void)sysfs; (void)bus;
    if (size) name[0] = '\0';
    return 0; /* macOS: no sysfs */
}
#endif

#endif
