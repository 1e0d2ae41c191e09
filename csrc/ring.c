/*
 * wdfusb shim: the streaming ring (see wdfusb_shim.h). depth transfers on one OUT pipe,
 * used in ring order and retired strictly in submission order, so waiting on the oldest
 * is all a ring ever does: on the virtual device that wait moves the bus model, on libusb
 * it reaps what the kernel finished.
 *
 * The ring's lock guards its bookkeeping (head, count, the staging buffers' use, the byte
 * count, the error). It is taken before a device lock, never after. A transfer is waited
 * on without the ring lock; whoever then finds it back and still the oldest retires it,
 * exactly once. A failure is recorded under the lock before anything is cancelled, and
 * every submit checks it under the same lock: nothing is submitted behind a cancel.
 */
#include <stdlib.h>
#include <string.h>

#include "shim.h"

#define RING_ALIGN 4096 /* staging buffers start on a page (DMA-friendly, no split cache lines) */

enum { STAGE_FREE = 0, STAGE_FILLING = 1, STAGE_IN_FLIGHT = 2 };

struct wu_ring {
    wu_mutex lock;
    wu_device *dev;
    uint8_t ep, type;
    int depth;
    size_t chunk;
    int64_t timeout_us;
    wu_xfer **slots;
    int *slot_stage;      /* staging buffer a slot carries, or -1 */
    int *stage_state;     /* depth + 1 entries */
    uint8_t *stage_mem;   /* allocation; stage i at stage_base + i * chunk */
    uint8_t *stage_base;
    int head, count, peak;
    int error;
    int settling;         /* a thread is cancelling and reaping what is in flight */
    uint64_t bytes_done, submitted, retired;
    int64_t front_ns;     /* when the oldest in flight became the oldest */
};

static int64_t deadline_of(int64_t slice_us)
{
    return slice_us > 0 && slice_us < INT64_MAX / 2000 ? wu_now_ns() + slice_us * 1000 : WU_NS_FOREVER;
}

int wu_ring_new(wu_device *dev, uint64_t owner, uint8_t ep, uint8_t type, int depth, size_t chunk,
                int64_t timeout_us, wu_ring **out)
{
    wu_ring *r;
    int rc = WU_OK;
    if (!out) return WU_ERR_INVALID_PARAM;
    *out = NULL;
    if (!dev) return WU_ERR_NO_DEVICE;
    if (depth <= 0 || !chunk || chunk > ((size_t)1 << 30) || (size_t)depth + 1 > SIZE_MAX / chunk - 1)
        return WU_ERR_INVALID_PARAM;
    r = calloc(1, sizeof *r);
    if (!r) return WU_ERR_NO_MEM;
    r->dev = dev;
    r->ep = ep;
    r->type = type;
    r->depth = depth;
    r->chunk = chunk;
    r->timeout_us = timeout_us > 0 ? timeout_us : 0;
    r->slots = calloc((size_t)depth, sizeof *r->slots);
    r->slot_stage = calloc((size_t)depth, sizeof *r->slot_stage);
    r->stage_state = calloc((size_t)depth + 1, sizeof *r->stage_state);
    r->stage_mem = malloc(((size_t)depth + 1) * chunk + RING_ALIGN);
    if (!r->slots || !r->slot_stage || !r->stage_state || !r->stage_mem) rc = WU_ERR_NO_MEM;
    for (int i = 0; rc == WU_OK && i < depth; i++) {
        rc = wu_xfer_new(dev, owner, &r->slots[i]);
        r->slot_stage[i] = -1;
    }
    if (rc != WU_OK) {
        for (int i = 0; r->slots && i < depth; i++) wu_xfer_free(r->slots[i]);
        free(r->slots);
        free(r->slot_stage);
        free(r->stage_state);
        free(r->stage_mem);
        free(r);
        return rc;
    }
    r->stage_base = r->stage_mem + (RING_ALIGN - (uintptr_t)r->stage_mem % RING_ALIGN) % RING_ALIGN;
    wu_mutex_init(&r->lock);
    wu_live_add(1);
    *out = r;
    return WU_OK;
}

/* The oldest transfer is back: count it. Caller holds the ring lock. */
static void retire_oldest(wu_ring *r, int result, size_t actual)
{
    int s = r->slot_stage[r->head];
    if (s >= 0) r->stage_state[s] = STAGE_FREE;
    r->slot_stage[r->head] = -1;
    r->bytes_done += actual;
    r->head = (r->head + 1) % r->depth;
    r->count--;
    r->retired++;
    r->front_ns = wu_now_ns();
    if (result != WU_OK && r->error == WU_OK) r->error = result;
}

/* Retire every transfer at the front that is back. Caller holds the ring lock. */
static void retire_done(wu_ring *r)
{
    while (r->count) {
        wu_xfer *x = r->slots[r->head];
        size_t actual = 0;
        int rc;
        if (wu_xfer_state(x) == WU_XFER_IN_FLIGHT) return;
        rc = wu_xfer_wait(x, 0, &actual);
        retire_oldest(r, rc, actual);
    }
}

/* Fail the ring (first reason wins), cancel what is in flight newest first, and wait until
   every transfer is back and counted. Caller holds the ring lock; returns with it held. */
static void settle(wu_ring *r, int reason)
{
    if (r->error == WU_OK) r->error = reason;
    for (int i = r->count - 1; i >= 0; i--) {
        wu_xfer *x = r->slots[(r->head + i) % r->depth];
        if (wu_xfer_state(x) == WU_XFER_IN_FLIGHT) wu_xfer_cancel(x);
    }
    r->settling++;
    for (;;) {
        wu_xfer *x;
        size_t actual;
        retire_done(r);
        if (!r->count) break;
        x = r->slots[r->head];
        wu_mutex_unlock(&r->lock);
        wu_xfer_reap(x, &actual); /* cancelled above: back soon */
        wu_mutex_lock(&r->lock);
    }
    r->settling--;
}

void wu_ring_free(wu_ring *r)
{
    if (!r) return;
    if (wu_device_forked(r->dev)) return; /* the child leaves the parent's objects alone */
    wu_mutex_lock(&r->lock);
    if (r->count) settle(r, WU_ERR_CANCELLED);
    wu_mutex_unlock(&r->lock);
    for (int i = 0; i < r->depth; i++) wu_xfer_free(r->slots[i]);
    wu_mutex_destroy(&r->lock);
    free(r->slots);
    free(r->slot_stage);
    free(r->stage_state);
    free(r->stage_mem);
    free(r);
    wu_live_add(-1);
}

uint8_t *wu_ring_stage(wu_ring *r)
{
    uint8_t *p = NULL;
    if (!r) return NULL;
    wu_mutex_lock(&r->lock);
    for (int i = 0; i <= r->depth && !p; i++)
        if (r->stage_state[i] == STAGE_FILLING) p = r->stage_base + (size_t)i * r->chunk;
    for (int i = 0; i <= r->depth && !p; i++)
        if (r->stage_state[i] == STAGE_FREE) {
            r->stage_state[i] = STAGE_FILLING;
            p = r->stage_base + (size_t)i * r->chunk;
        }
    wu_mutex_unlock(&r->lock);
    return p; /* never NULL: depth + 1 buffers, at most depth in flight */
}

/* Submit the next slot; caller holds the ring lock and checked there is room. A transfer
   that is already back (ended by a pipe abort or a device-level cancel the ring has not seen
   yet) is retired first: if it failed, nothing goes out behind it, so what moved stays a
   prefix of the stream. */
static int submit_locked(wu_ring *r, uint8_t *buf, size_t len, unsigned flags)
{
    int slot, stage = -1, rc;
    retire_done(r);
    if (r->error != WU_OK) return r->error;
    slot = (r->head + r->count) % r->depth;
    if (buf >= r->stage_base && buf < r->stage_base + ((size_t)r->depth + 1) * r->chunk) {
        stage = (int)((size_t)(buf - r->stage_base) / r->chunk);
        if (r->stage_state[stage] != STAGE_FILLING) return WU_ERR_INVALID_PARAM;
    }
    rc = wu_xfer_submit(r->slots[slot], r->ep, r->type, buf, len, flags, 0, 0);
    if (rc != WU_OK) return rc;
    if (stage >= 0) r->stage_state[stage] = STAGE_IN_FLIGHT;
    r->slot_stage[slot] = stage;
    if (!r->count) r->front_ns = wu_now_ns();
    r->count++;
    r->submitted++;
    if (r->count > r->peak) r->peak = r->count;
    return WU_OK;
}

int wu_ring_submit(wu_ring *r, uint8_t *buf, size_t len, unsigned flags)
{
    int rc;
    if (!r || (!buf && len) || len > r->chunk) return WU_ERR_INVALID_PARAM;
    if (wu_in_callback()) return WU_ERR_WRONG_CONTEXT;
    wu_mutex_lock(&r->lock);
    if (r->error != WU_OK) rc = r->error;
    else if (r->count == r->depth) rc = WU_ERR_BUSY;
    else rc = submit_locked(r, buf, len, flags);
    if (rc != WU_OK && rc != WU_ERR_BUSY) settle(r, rc); /* the first failure stays the ring's error */
    wu_mutex_unlock(&r->lock);
    return rc;
}

/* Wait for the oldest transfer until `until` (or its time-out) and retire it. Caller holds
   the ring lock; it is released while waiting. WU_OK, WU_PENDING or the ring's error. */
static int wait_oldest(wu_ring *r, int64_t until)
{
    wu_xfer *x;
    int64_t stop_at = until, now;
    int rc;
    retire_done(r);
    if (r->error != WU_OK) {
        settle(r, r->error);
        return r->error;
    }
    if (!r->count) return WU_OK;
    x = r->slots[r->head];
    if (r->timeout_us && r->front_ns + r->timeout_us * 1000 < stop_at) stop_at = r->front_ns + r->timeout_us * 1000;
    now = wu_now_ns();
    if (stop_at != WU_NS_FOREVER && now >= stop_at) {
        if (stop_at == until) return WU_PENDING;
        settle(r, WU_ERR_TIMEOUT); /* the oldest has waited too long: a prefix moved */
        return r->error;
    }
    wu_mutex_unlock(&r->lock);
    rc = wu_xfer_wait(x, stop_at == WU_NS_FOREVER ? 0 : (stop_at - now + 999) / 1000, NULL);
    wu_mutex_lock(&r->lock);
    if (rc == WU_ERR_WRONG_CONTEXT) {
        if (r->error == WU_OK) r->error = rc;
        return rc;
    }
    retire_done(r);
    if (r->error != WU_OK) settle(r, r->error);
    return r->error != WU_OK ? r->error : WU_OK;
}

int wu_ring_wait(wu_ring *r, int64_t slice_us)
{
    int64_t until = deadline_of(slice_us);
    int rc;
    if (!r) return WU_ERR_INVALID_PARAM;
    if (wu_in_callback()) return WU_ERR_WRONG_CONTEXT; /* it would wait for this very thread */
    wu_mutex_lock(&r->lock);
    for (;;) {
        uint64_t before = r->retired;
        rc = wait_oldest(r, until);
        if (rc != WU_OK || r->retired != before || !r->count) break;
        if (until != WU_NS_FOREVER && wu_now_ns() >= until) {
            rc = WU_PENDING;
            break;
        }
    }
    wu_mutex_unlock(&r->lock);
    return rc;
}

int wu_ring_poll(wu_ring *r)
{
    int rc;
    if (!r) return WU_ERR_INVALID_PARAM;
    if (wu_in_callback()) return WU_ERR_WRONG_CONTEXT;
    wu_mutex_lock(&r->lock);
    retire_done(r);
    if (r->error != WU_OK && r->count) settle(r, r->error);
    rc = r->error;
    wu_mutex_unlock(&r->lock);
    return rc;
}

/* What the ring says now. Caller holds the ring lock. */
static void info_locked(const wu_ring *r, wu_ring_info *out)
{
    out->depth = r->depth;
    out->in_flight = r->count;
    out->peak = r->peak;
    out->error = r->error;
    out->bytes_done = r->bytes_done;
    out->submitted = r->submitted;
    out->retired = r->retired;
}

int wu_ring_run(wu_ring *r, uint8_t *buf, size_t len, unsigned flags, int64_t slice_us, size_t *done,
                wu_ring_info *info)
{
    int64_t until = deadline_of(slice_us);
    size_t next;
    int rc = WU_OK;
    if (!r || !done || *done > len || (!buf && len)) return WU_ERR_INVALID_PARAM;
    if (wu_in_callback()) return WU_ERR_WRONG_CONTEXT;
    next = *done;
    wu_mutex_lock(&r->lock);
    while (next < len) {
        if (r->error != WU_OK) {
            settle(r, r->error);
            rc = r->error;
            break;
        }
        if (r->count < r->depth) {
            size_t n = len - next < r->chunk ? len - next : r->chunk;
            rc = submit_locked(r, buf + next, n, flags);
            if (rc != WU_OK) {
                settle(r, rc);
                break;
            }
            next += n;
            continue;
        }
        rc = wait_oldest(r, until);
        if (rc != WU_OK) break;
    }
    if (info) info_locked(r, info); /* one lock serves the caller's next look as well */
    wu_mutex_unlock(&r->lock);
    *done = next;
    return rc;
}

int wu_ring_cancel(wu_ring *r, int reason)
{
    int rc;
    if (!r) return WU_ERR_INVALID_PARAM;
    if (wu_in_callback()) return WU_ERR_WRONG_CONTEXT;
    if (wu_device_forked(r->dev)) return WU_ERR_FORKED;
    wu_mutex_lock(&r->lock);
    settle(r, reason == WU_OK ? WU_ERR_CANCELLED : reason);
    rc = r->error;
    wu_mutex_unlock(&r->lock);
    return rc;
}

void wu_ring_info_get(wu_ring *r, wu_ring_info *out)
{
    if (!r || !out) return;
    wu_mutex_lock(&r->lock);
    info_locked(r, out);
    wu_mutex_unlock(&r->lock);
}
