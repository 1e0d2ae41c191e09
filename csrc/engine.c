/*
 * wdfusb shim: the generic transfer engine. Devices and transfers are reference
 * counted; every backend-specific step goes through dev->be. A transfer is never
 * freed while it is in flight, and a device is freed only when its owner closed
 * it and its last transfer is gone.
 */
#include <stdlib.h>
#include <string.h>

#include "shim.h"

#ifndef WU_VERSION
#error "WU_VERSION must be defined by the build (build_ffi.py)"
#endif

static int live_objects;
static WU_THREAD_LOCAL int callback_depth;

const char *wu_shim_version(void) { return WU_VERSION; }
int wu_live_objects(void) { return WU_LOAD(&live_objects); }
void wu_live_add(int delta) { WU_ADD(&live_objects, delta); }
int wu_in_callback(void) { return callback_depth > 0; }
void wu_enter_callback(void) { callback_depth++; }
void wu_leave_callback(void) { callback_depth--; }
void wu_set_completion_context(int on) { on ? wu_enter_callback() : wu_leave_callback(); }
int wu_in_completion_context(void) { return wu_in_callback(); }

/* ---- the completion queue: asynchronous transfers that are back ------------------ */

static struct {
    wu_mutex lock;
    wu_cond cond;
    wu_xfer *head, *tail;
    int wake;
} cq;
static wu_once_t cq_once = WU_ONCE_INIT;

static void cq_init(void)
{
    wu_mutex_init(&cq.lock);
    wu_cond_init(&cq.cond);
}

static void cq_push(wu_xfer *x)
{
    wu_once(&cq_once, cq_init);
    wu_mutex_lock(&cq.lock);
    x->cq_next = NULL;
    x->queued = 1;
    if (cq.tail) cq.tail->cq_next = x; else cq.head = x;
    cq.tail = x;
    wu_cond_broadcast(&cq.cond);
    wu_mutex_unlock(&cq.lock);
}

void wu_cq_remove(wu_xfer *x)
{
    wu_xfer **pp, *prev = NULL;
    wu_once(&cq_once, cq_init);
    wu_mutex_lock(&cq.lock);
    for (pp = &cq.head; *pp && *pp != x; pp = &(*pp)->cq_next) prev = *pp;
    if (*pp) {
        *pp = x->cq_next;
        if (cq.tail == x) cq.tail = prev;
        x->queued = 0;
    }
    wu_mutex_unlock(&cq.lock);
}

int wu_cq_wait(int64_t timeout_us, wu_completion *out, int max)
{
    int n = 0;
    int64_t until = timeout_us < 0 ? WU_NS_FOREVER : wu_now_ns() + timeout_us * 1000;
    if (!out || max <= 0) return WU_ERR_INVALID_PARAM;
    wu_once(&cq_once, cq_init);
    wu_mutex_lock(&cq.lock);
    while (!cq.head && !cq.wake && wu_now_ns() < until) wu_cond_wait_until(&cq.cond, &cq.lock, until);
    cq.wake = 0;
    while (cq.head && n < max) {
        wu_xfer *x = cq.head;
        cq.head = x->cq_next;
        if (!cq.head) cq.tail = NULL;
        x->queued = 0;
        out[n].tag = x->tag;
        out[n].status = x->result;
        out[n].actual = x->actual;
        n++;
    }
    wu_mutex_unlock(&cq.lock);
    return n;
}

void wu_cq_wake(void)
{
    wu_once(&cq_once, cq_init);
    wu_mutex_lock(&cq.lock);
    cq.wake = 1;
    wu_cond_broadcast(&cq.cond);
    wu_mutex_unlock(&cq.lock);
}

wu_device *wu_device_alloc(const wu_backend *be, void *impl, int is_virtual)
{
    wu_device *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->be = be;
    d->impl = impl;
    d->refs = 1;
    d->virtual_device = is_virtual;
    wu_mutex_init(&d->lock);
    wu_live_add(1);
    return d;
}

static void device_unref(wu_device *d)
{
    int last;
    wu_mutex_lock(&d->lock);
    last = --d->refs == 0;
    wu_mutex_unlock(&d->lock);
    if (!last) return;
    d->be->destroy(d);
    wu_mutex_destroy(&d->lock);
    free(d);
    wu_live_add(-1);
}

/* ---- device operations ------------------------------------------------------- */

#define DEV_CALL(d, call)                                \
    do {                                                 \
        if (!(d)) return WU_ERR_NO_DEVICE;               \
        if (WU_LOAD(&(d)->closed)) return WU_ERR_NO_DEVICE; \
        return (call);                                   \
    } while (0)

int wu_device_is_virtual(wu_device *d) { return d ? d->virtual_device : 0; }
int wu_device_speed(wu_device *d) { DEV_CALL(d, d->be->speed(d)); }

int wu_device_get_descriptor(wu_device *d, uint8_t type, uint8_t index, uint16_t langid, uint8_t *buf, int len)
{
    if (!buf || len < 0) return WU_ERR_INVALID_PARAM;
    DEV_CALL(d, d->be->get_descriptor(d, type, index, langid, buf, len));
}

int wu_device_get_configuration(wu_device *d, int *config)
{
    if (!config) return WU_ERR_INVALID_PARAM;
    DEV_CALL(d, d->be->get_configuration(d, config));
}

int wu_device_set_configuration(wu_device *d, int c) { DEV_CALL(d, d->be->set_configuration(d, c)); }
int wu_device_claim_interface(wu_device *d, int i) { DEV_CALL(d, d->be->claim_interface(d, i)); }
int wu_device_release_interface(wu_device *d, int i) { DEV_CALL(d, d->be->release_interface(d, i)); }
int wu_device_set_altsetting(wu_device *d, int i, int a) { DEV_CALL(d, d->be->set_altsetting(d, i, a)); }
int wu_device_clear_halt(wu_device *d, uint8_t ep) { DEV_CALL(d, d->be->clear_halt(d, ep)); }

int wu_device_live_transfers(wu_device *d)
{
    int n = 0;
    if (!d) return 0;
    wu_mutex_lock(&d->lock);
    for (wu_xfer *x = d->xfers; x; x = x->next)
        n += WU_LOAD(&x->state) == WU_XFER_IN_FLIGHT;
    wu_mutex_unlock(&d->lock);
    return n;
}

/* Cancel every transfer in flight on ep (all endpoints when all_eps), newest first, so that
   no transfer moves data after an earlier one was cut short; then drain. */
static void cancel_all(wu_device *d, uint8_t ep, int all_eps)
{
    wu_mutex_lock(&d->lock);
    for (;;) {
        wu_xfer *newest = NULL;
        for (wu_xfer *x = d->xfers; x; x = x->next)
            if (WU_LOAD(&x->state) == WU_XFER_IN_FLIGHT && !x->cancel_requested && (all_eps || x->ep == ep) &&
                (!newest || x->seq > newest->seq))
                newest = x;
        if (!newest) break;
        newest->cancel_requested = 1;
        d->be->cancel(newest);
    }
    wu_mutex_unlock(&d->lock);
    d->be->drain(d);
}

int wu_device_abort(wu_device *d, uint8_t ep)
{
    if (!d) return WU_ERR_NO_DEVICE;
    if (wu_in_callback()) return WU_ERR_WRONG_CONTEXT;
    cancel_all(d, ep, 0);
    return WU_OK;
}

void wu_device_close(wu_device *d)
{
    if (!d) return;
    wu_mutex_lock(&d->lock);
    if (d->closed) {
        wu_mutex_unlock(&d->lock);
        return;
    }
    WU_STORE(&d->closed, 1);
    wu_mutex_unlock(&d->lock);
    cancel_all(d, 0, 1);
    d->be->close(d);
    device_unref(d);
}

/* ---- transfers ------------------------------------------------------------------ */

wu_xfer *wu_xfer_new(wu_device *d)
{
    wu_xfer *x;
    if (!d) return NULL;
    x = calloc(1, sizeof *x);
    if (!x) return NULL;
    x->dev = d;
    if (d->be->xfer_init(x) != WU_OK) {
        free(x);
        return NULL;
    }
    wu_mutex_lock(&d->lock);
    d->refs++;
    x->next = d->xfers;
    if (d->xfers) d->xfers->prev = x;
    d->xfers = x;
    wu_mutex_unlock(&d->lock);
    wu_live_add(1);
    return x;
}

int wu_xfer_free(wu_xfer *x)
{
    wu_device *d;
    if (!x) return WU_OK;
    d = x->dev;
    wu_mutex_lock(&d->lock);
    if (WU_LOAD(&x->state) == WU_XFER_IN_FLIGHT || x->waiters) {
        wu_mutex_unlock(&d->lock);
        return WU_ERR_IN_FLIGHT;
    }
    if (x->prev) x->prev->next = x->next; else d->xfers = x->next;
    if (x->next) x->next->prev = x->prev;
    wu_mutex_unlock(&d->lock);
    if (x->queued) wu_cq_remove(x);
    d->be->xfer_fini(x);
    free(x);
    wu_live_add(-1);
    device_unref(d);
    return WU_OK;
}

int wu_xfer_state(wu_xfer *x) { return x ? WU_LOAD(&x->state) : WU_XFER_IDLE; }

void wu_xfer_retire(wu_xfer *x)
{
    if (!x) return;
    wu_mutex_lock(&x->dev->lock);
    x->retired = 1;
    wu_mutex_unlock(&x->dev->lock);
}

void wu_xfer_finish(wu_xfer *x, int result)
{
    x->result = result;
    x->completed = 1;
    WU_STORE(&x->state, WU_XFER_DONE);
    if (x->tag) cq_push(x);
}

static int submit(wu_xfer *x, uint8_t ep, uint8_t type, uint8_t *buf, size_t len, unsigned flags,
                  int64_t timeout_us, uint64_t tag)
{
    wu_device *d;
    int rc;
    if (!x) return WU_ERR_INVALID_PARAM;
    if (!tag && wu_in_callback()) return WU_ERR_WRONG_CONTEXT; /* a synchronous send would deadlock */
    if (type != WU_EP_BULK && type != WU_EP_INTERRUPT) return WU_ERR_NOT_SUPPORTED;
    if (!buf && len) return WU_ERR_INVALID_PARAM;
    if (flags & ~(unsigned)WU_XFER_ZLP) return WU_ERR_INVALID_PARAM;
    d = x->dev;
    wu_mutex_lock(&d->lock);
    if (WU_LOAD(&x->state) == WU_XFER_IN_FLIGHT) {
        wu_mutex_unlock(&d->lock);
        return WU_ERR_IN_FLIGHT;
    }
    if (d->closed || x->retired) {
        wu_mutex_unlock(&d->lock);
        return WU_ERR_NO_DEVICE;
    }
    x->ep = ep;
    x->type = type;
    x->buf = buf;
    x->len = len;
    x->flags = flags;
    x->actual = 0;
    x->result = WU_OK;
    x->completed = 0;
    x->cancel_requested = 0;
    x->timed_out = 0;
    x->submitted = 0;
    x->deadline_ns = WU_NS_FOREVER;
    if (timeout_us > 0) {
        int64_t now = wu_now_ns();
        if (timeout_us < (INT64_MAX - now) / 1000) x->deadline_ns = now + timeout_us * 1000; /* else: for ever */
    }
    x->tag = tag;
    x->seq = ++d->submits;
    WU_STORE(&x->state, WU_XFER_IN_FLIGHT);
    wu_mutex_unlock(&d->lock);
    rc = tag ? d->be->start_events(d) : WU_OK;
    if (rc == WU_OK) rc = d->be->submit(x);
    if (rc != WU_OK) {
        wu_mutex_lock(&d->lock);
        x->result = rc;
        x->tag = 0;
        WU_STORE(&x->state, WU_XFER_IDLE);
        wu_mutex_unlock(&d->lock);
    }
    return rc;
}

int wu_xfer_submit(wu_xfer *x, uint8_t ep, uint8_t type, uint8_t *buf, size_t len, unsigned flags,
                   int64_t timeout_us)
{
    return submit(x, ep, type, buf, len, flags, timeout_us, 0);
}

int wu_xfer_submit_async(wu_xfer *x, uint8_t ep, uint8_t type, uint8_t *buf, size_t len, unsigned flags,
                         int64_t timeout_us, uint64_t tag)
{
    if (!tag) return WU_ERR_INVALID_PARAM;
    return submit(x, ep, type, buf, len, flags, timeout_us, tag);
}

static void waiters_add(wu_xfer *x, int delta)
{
    wu_mutex_lock(&x->dev->lock);
    x->waiters += delta;
    wu_mutex_unlock(&x->dev->lock);
}

int wu_xfer_wait(wu_xfer *x, int64_t slice_us, size_t *actual)
{
    int state;
    if (!x) return WU_ERR_INVALID_PARAM;
    state = WU_LOAD(&x->state);
    if (state == WU_XFER_IN_FLIGHT) {
        int64_t until = slice_us > 0 && slice_us < INT64_MAX / 2000 ? wu_now_ns() + slice_us * 1000 : WU_NS_FOREVER;
        int rc;
        if (wu_in_callback()) return WU_ERR_WRONG_CONTEXT;
        waiters_add(x, 1);
        rc = x->dev->be->wait(x, until);
        waiters_add(x, -1);
        if (rc == WU_PENDING) {
            if (actual) *actual = x->actual;
            return WU_PENDING;
        }
        state = WU_LOAD(&x->state);
    }
    if (actual) *actual = x->actual;
    return state == WU_XFER_IDLE && x->result == WU_OK ? WU_ERR_NOT_FOUND : x->result;
}

int wu_xfer_run(wu_xfer *x, uint8_t ep, uint8_t type, uint8_t *buf, size_t len, unsigned flags,
                int64_t timeout_us, int64_t slice_us, size_t *actual)
{
    int rc = wu_xfer_submit(x, ep, type, buf, len, flags, timeout_us);
    if (rc != WU_OK) {
        if (actual) *actual = 0;
        return rc;
    }
    return wu_xfer_wait(x, slice_us, actual);
}

int wu_xfer_cancel(wu_xfer *x)
{
    wu_device *d;
    int rc = WU_ERR_NOT_FOUND;
    if (!x) return WU_ERR_INVALID_PARAM;
    d = x->dev;
    wu_mutex_lock(&d->lock);
    if (WU_LOAD(&x->state) == WU_XFER_IN_FLIGHT) {
        x->cancel_requested = 1;
        rc = d->be->cancel(x);
    }
    wu_mutex_unlock(&d->lock);
    return rc;
}

int wu_xfer_reap(wu_xfer *x, size_t *actual)
{
    if (!x) return WU_ERR_INVALID_PARAM;
    if (WU_LOAD(&x->state) == WU_XFER_IN_FLIGHT) {
        wu_xfer_cancel(x);
        waiters_add(x, 1);
        while (x->dev->be->wait(x, WU_NS_FOREVER) == WU_PENDING) {
        }
        waiters_add(x, -1);
    }
    if (actual) *actual = x->actual;
    return x->result;
}

/* Cancel every transfer of the ring newest first, then reap them oldest first. */
static void ring_abort(wu_xfer **slots, int depth, wu_ring_state *st)
{
    for (int i = st->count - 1; i >= 0; i--) wu_xfer_cancel(slots[(st->head + i) % depth]);
    while (st->count) {
        size_t actual = 0;
        wu_xfer_reap(slots[st->head], &actual);
        st->bytes_done += actual;
        st->head = (st->head + 1) % depth;
        st->count--;
        st->retired++;
    }
}

int wu_ring_run(wu_xfer **slots, int depth, wu_ring_state *st, uint8_t ep, uint8_t type, uint8_t *buf,
                size_t len, size_t chunk, unsigned flags, int64_t timeout_us, int64_t slice_us)
{
    int64_t until = slice_us > 0 && slice_us < INT64_MAX / 2000 ? wu_now_ns() + slice_us * 1000 : WU_NS_FOREVER;
    if (!slots || !st || depth <= 0 || !chunk || st->count < 0 || st->count > depth || st->head < 0 ||
        st->head >= depth || st->next > len || (!buf && len))
        return WU_ERR_INVALID_PARAM;
    st->retired = 0;
    while (st->error == WU_OK && st->next < len) {
        if (WU_LOAD(&st->stop)) {
            st->error = WU_ERR_CANCELLED;
            break;
        }
        if (st->count < depth) { /* room: submit the next chunk */
            size_t n = len - st->next < chunk ? len - st->next : chunk;
            int rc = wu_xfer_submit(slots[(st->head + st->count) % depth], ep, type, buf + st->next, n, flags, 0);
            if (rc != WU_OK) {
                st->error = rc;
                break;
            }
            if (!st->count) st->front_ns = wu_now_ns();
            st->next += n;
            st->count++;
            continue;
        }
        { /* full: retire the oldest */
            size_t actual = 0;
            int64_t now = wu_now_ns(), stop_at = until;
            int rc;
            if (timeout_us > 0 && st->front_ns + timeout_us * 1000 < stop_at) stop_at = st->front_ns + timeout_us * 1000;
            if (stop_at != WU_NS_FOREVER && now >= stop_at) {
                if (stop_at == until) return WU_PENDING;
                st->error = WU_ERR_TIMEOUT; /* the oldest has waited too long */
                break;
            }
            rc = wu_xfer_wait(slots[st->head], stop_at == WU_NS_FOREVER ? 0 : (stop_at - now + 999) / 1000, &actual);
            if (rc == WU_PENDING) continue; /* the loop decides: slice over, or time-out */
            st->bytes_done += actual;
            st->head = (st->head + 1) % depth;
            st->count--;
            st->retired++;
            st->front_ns = wu_now_ns();
            if (rc != WU_OK) st->error = rc;
        }
    }
    /* the ring stops at its first failure: settle every transfer (newest first) and count its
       bytes before handing back, while the caller still holds the transfers */
    if (st->error != WU_OK) ring_abort(slots, depth, st);
    return st->error;
}

int wu_bench_loop(wu_xfer *x, uint8_t ep, uint8_t type, uint8_t *buf, size_t len, uint64_t count,
                  int64_t timeout_us, double *seconds)
{
    int64_t t0 = wu_now_ns();
    int rc = WU_OK;
    size_t actual;
    for (uint64_t i = 0; i < count && rc == WU_OK; i++)
        rc = wu_xfer_run(x, ep, type, buf, len, 0, timeout_us, 0, &actual);
    if (seconds) *seconds = (double)(wu_now_ns() - t0) / 1e9;
    return rc;
}

/* ---- CRC-32 (zlib's polynomial), slicing by 8 ---------------------------------- */

static uint32_t crc_table[8][256];
static wu_once_t crc_once = WU_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFF];
}

uint32_t wu_crc32(uint32_t crc, const uint8_t *p, size_t n)
{
    wu_once(&crc_once, crc_init);
    if (!p) return crc;
    crc = ~crc;
    while (n >= 8) {
        uint32_t a = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        uint32_t b = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
        a ^= crc;
        crc = crc_table[7][a & 0xFF] ^ crc_table[6][(a >> 8) & 0xFF] ^ crc_table[5][(a >> 16) & 0xFF] ^
              crc_table[4][a >> 24] ^ crc_table[3][b & 0xFF] ^ crc_table[2][(b >> 8) & 0xFF] ^
              crc_table[1][(b >> 16) & 0xFF] ^ crc_table[0][b >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) crc = crc_table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}
