/*
 * wdfusb shim: the device-list generation. Anything that may change which devices are
 * attached bumps one counter: libusb's hotplug callback (backend_libusb.c), a virtual device
 * unplugged or closed (backend_virtual.c), and a virtual device's new attachment once Python
 * lists it (virtual.py: only then can a listing find it). wu_hotplug_wait
 * blocks until the counter moves; Python's watch() then lists the devices again and compares,
 * so the list itself stays the one record of what is attached.
 */
#include "shim.h"

static wu_mutex lock;
static wu_cond cond;
static wu_once_t once = WU_ONCE_INIT;
static uint64_t generation;

static void after_fork(void)
{
    wu_mutex_init(&lock); /* the parent's may have been held by a thread the fork left behind */
    wu_cond_init(&cond);
}

static void init(void)
{
    wu_mutex_init(&lock);
    wu_cond_init(&cond);
    wu_on_fork_child(after_fork);
}

void wu_hotplug_bump(void)
{
    wu_once(&once, init);
    wu_mutex_lock(&lock);
    generation++;
    wu_cond_broadcast(&cond);
    wu_mutex_unlock(&lock);
}

uint64_t wu_hotplug_wait(uint64_t seen, int64_t timeout_us)
{
    int64_t until = timeout_us < 0 ? WU_NS_FOREVER : wu_now_ns() + timeout_us * 1000;
    uint64_t now;
    wu_once(&once, init);
    wu_mutex_lock(&lock);
    while (generation == seen && wu_now_ns() < until) wu_cond_wait_until(&cond, &lock, until);
    now = generation;
    wu_mutex_unlock(&lock);
    return now;
}
