/*
 * wdfusb shim: the generic transfer engine. Every transfer of every type and backend
 * goes through one submit / cancel / complete / free path here; backend-specific steps
 * go through dev->be. The transfer's state is owned here, guarded by its device's lock.
 *
 * Lifetimes: devices and transfers are reference counted. A transfer holds its device;
 * a transfer is freed only by its owner and never while in flight; a device's memory
 * outlives its close until its owner freed it and its last transfer is gone, so a
 * handle held by a caller is never dangling.
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
    wu_cq_note *nhead, *ntail;  /* notes posted (a ring's transfer came back), oldest first */
    int wake;
} cq;
static wu_once_t cq_once = WU_ONCE_INIT;

static void cq_after_fork(void)
{
    /* the queued transfers belong to devices the child cannot use: forget them */
    wu_mutex_init(&cq.lock);
    wu_cond_init(&cq.cond);
    cq.head = cq.tail = NULL;
    cq.nhead = cq.ntail = NULL;
    cq.wake = 0;
}

static void cq_init(void)
{
    wu_mutex_init(&cq.lock);
    wu_cond_init(&cq.cond);
    wu_on_fork_child(cq_after_fork);
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

static void cq_remove(wu_xfer *x)
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

/* Take a queued note off the queue; caller holds the queue's lock. */
static void note_unlink(wu_cq_note *n)
{
    wu_cq_note **pp, *prev = NULL;
    for (pp = &cq.nhead; *pp && *pp != n; pp = &(*pp)->next) prev = *pp;
    if (!*pp) return;
    *pp = n->next;
    if (cq.ntail == n) cq.ntail = prev;
    n->next = NULL;
    n->queued = 0;
}

void wu_cq_note_arm(wu_cq_note *n, uint64_t tag)
{
    wu_once(&cq_once, cq_init);
    wu_mutex_lock(&cq.lock);
    n->tag = tag;
    if (!tag && n->queued) note_unlink(n);
    wu_mutex_unlock(&cq.lock);
}

void wu_cq_note_post(wu_cq_note *n)
{
    wu_once(&cq_once, cq_init);
    wu_mutex_lock(&cq.lock);
    if (n->tag && !n->queued) {
        n->next = NULL;
        n->queued = 1;
        if (cq.ntail) cq.ntail->next = n; else cq.nhead = n;
        cq.ntail = n;
        wu_cond_broadcast(&cq.cond);
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
    while (!cq.head && !cq.nhead && !cq.wake && wu_now_ns() < until) wu_cond_wait_until(&cq.cond, &cq.lock, until);
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
    while (cq.nhead && n < max) {
        wu_cq_note *note = cq.nhead;
        out[n].tag = note->tag;
        out[n].status = WU_OK;
        out[n].actual = 0;
        note_unlink(note);
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

/* ---- devices ----------------------------------------------------------------------- */

wu_device *wu_device_alloc(const wu_backend *be, void *impl, int is_virtual)
{
    wu_device *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    wu_once(&cq_once, cq_init); /* registers the fork handler before any device exists */
    d->be = be;
    d->impl = impl;
    d->refs = 1;
    d->virtual_device = is_virtual;
    d->fork_gen = wu_fork_generation();
    wu_mutex_init(&d->lock);
    wu_live_add(1);
    return d;
}

int wu_device_forked(wu_device *d) { return d->fork_gen != wu_fork_generation(); }
int wu_device_usable(wu_device *d) { return !WU_LOAD(&d->closed) && !wu_device_forked(d); }

static int unusable_code(wu_device *d) { return wu_device_forked(d) ? WU_ERR_FORKED : WU_ERR_NO_DEVICE; }

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

#define DEV_CALL(d, call)                                  \
    do {                                                   \
        if (!(d)) return WU_ERR_NO_DEVICE;                 \
        if (!wu_device_usable(d)) return unusable_code(d); \
        return (call);                                     \
    } while (0)

int wu_device_is_virtual(wu_device *d) { return d ? d->virtual_device : 0; }
int wu_device_check(wu_device *d) { return !d ? WU_ERR_NO_DEVICE : wu_device_usable(d) ? WU_OK : unusable_code(d); }
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
int wu_device_kernel_driver(wu_device *d, int iface, int op)
{
    if (op < WU_KDRIVER_ACTIVE || op > WU_KDRIVER_ATTACH) return WU_ERR_INVALID_PARAM;
    DEV_CALL(d, d->be->kernel_driver(d, iface, op));
}

int wu_device_live_transfers(wu_device *d)
{
    int n = 0;
    if (!d || wu_device_forked(d)) return 0;
    wu_mutex_lock(&d->lock);
    for (wu_xfer *x = d->xfers; x; x = x->next) n += x->state == WU_XFER_IN_FLIGHT;
    wu_mutex_unlock(&d->lock);
    return n;
}

/* Cancel one transfer in flight; caller holds the device lock. */
static int cancel_locked(wu_xfer *x)
{
    if (x->state != WU_XFER_IN_FLIGHT) {
        x->cancel_sticky = 1;
        return WU_ERR_NOT_FOUND;
    }
    if (x->cancel_requested) return WU_OK;
    x->cancel_requested = 1;
    return x->dev->be->cancel(x);
}

/* The one cancel order: every transfer in flight that matches, newest first (by submission),
   so no transfer moves data after an earlier one on its endpoint was cut short. Caller holds
   the device lock. */
typedef int (*xfer_match)(const wu_xfer *x, const void *arg);

static void cancel_newest_first(wu_device *d, xfer_match match, const void *arg, int retire)
{
    uint64_t below = UINT64_MAX;
    for (;;) {
        wu_xfer *newest = NULL;
        for (wu_xfer *x = d->xfers; x; x = x->next) {
            if (!match(x, arg)) continue;
            if (retire) x->retired = 1;
            if (x->state == WU_XFER_IN_FLIGHT && x->seq < below && (!newest || x->seq > newest->seq)) newest = x;
        }
        if (!newest) return;
        below = newest->seq;
        if (!newest->cancel_requested) {
            newest->cancel_requested = 1;
            d->be->cancel(newest);
        }
    }
}

typedef struct {
    int ep;
    uint64_t owner;
} ep_owner;

static int match_ep_owner(const wu_xfer *x, const void *arg)
{
    const ep_owner *m = arg;
    return (m->ep < 0 || x->ep == m->ep) && (!m->owner || x->owner == m->owner);
}

int wu_device_cancel(wu_device *d, int ep, uint64_t owner, int retire)
{
    ep_owner m = {ep, owner};
    if (!d) return WU_ERR_NO_DEVICE;
    if (wu_device_forked(d)) return WU_ERR_FORKED;
    if (wu_in_callback()) return WU_ERR_WRONG_CONTEXT; /* draining would wait for this thread */
    wu_mutex_lock(&d->lock);
    cancel_newest_first(d, match_ep_owner, &m, retire);
    wu_mutex_unlock(&d->lock);
    d->be->drain(d);
    return d->closed && !retire ? WU_ERR_NO_DEVICE : WU_OK;
}

/* A port operation: what is in flight is cancelled (newest first) and drained, then op runs. */
static int quiesce_then(wu_device *d, int (*op)(wu_device *d))
{
    ep_owner all = {-1, 0};
    if (!d) return WU_ERR_NO_DEVICE;
    if (!wu_device_usable(d)) return unusable_code(d);
    if (wu_in_callback()) return WU_ERR_WRONG_CONTEXT; /* draining would wait for this thread */
    wu_mutex_lock(&d->lock);
    cancel_newest_first(d, match_ep_owner, &all, 0);
    wu_mutex_unlock(&d->lock);
    d->be->drain(d);
    return op(d);
}

int wu_device_reset_port(wu_device *d) { return quiesce_then(d, d ? d->be->reset_port : NULL); }

int wu_device_cycle_port(wu_device *d) { return quiesce_then(d, d ? d->be->cycle_port : NULL); }

int wu_device_close(wu_device *d)
{
    ep_owner all = {-1, 0};
    if (!d) return WU_ERR_NO_DEVICE;
    if (wu_device_forked(d)) { /* its locks may be held by threads the fork left behind */
        WU_STORE(&d->closed, 1);
        return WU_OK;
    }
    wu_mutex_lock(&d->lock);
    if (d->closed) {
        wu_mutex_unlock(&d->lock);
        return WU_OK;
    }
    WU_STORE(&d->closed, 1);
    cancel_newest_first(d, match_ep_owner, &all, 1);
    wu_mutex_unlock(&d->lock);
    d->be->drain(d);
    d->be->close(d);
    return WU_OK;
}

void wu_device_free(wu_device *d)
{
    if (!d) return;
    wu_device_close(d);
    if (wu_device_forked(d)) return; /* the child leaves the parent's objects alone */
    wu_mutex_lock(&d->lock);
    d->freed = 1;
    wu_mutex_unlock(&d->lock);
    device_unref(d);
}

/* ---- transfers ------------------------------------------------------------------ */

int wu_xfer_new(wu_device *d, uint64_t owner, wu_xfer **out)
{
    wu_xfer *x;
    if (!out) return WU_ERR_INVALID_PARAM;
    *out = NULL;
    if (!d) return WU_ERR_NO_DEVICE;
    if (!wu_device_usable(d)) return unusable_code(d);
    x = calloc(1, sizeof *x);
    if (!x) return WU_ERR_NO_MEM;
    x->dev = d;
    x->owner = owner;
    if (d->be->xfer_init(x) != WU_OK) {
        free(x);
        return WU_ERR_NO_MEM;
    }
    wu_mutex_lock(&d->lock);
    if (d->closed) {
        wu_mutex_unlock(&d->lock);
        d->be->xfer_fini(x);
        free(x);
        return WU_ERR_NO_DEVICE;
    }
    d->refs++;
    x->next = d->xfers;
    if (d->xfers) d->xfers->prev = x;
    d->xfers = x;
    wu_mutex_unlock(&d->lock);
    wu_live_add(1);
    *out = x;
    return WU_OK;
}

void wu_xfer_free(wu_xfer *x)
{
    wu_device *d;
    if (!x) return;
    d = x->dev;
    if (wu_device_forked(d)) return; /* the child leaves the parent's objects alone */
    wu_xfer_retire(x);
    for (;;) { /* never free what the backend or another thread may still touch */
        size_t actual;
        int busy;
        wu_mutex_lock(&d->lock);
        busy = x->state == WU_XFER_IN_FLIGHT || x->waiters;
        if (!busy) {
            if (x->prev) x->prev->next = x->next; else d->xfers = x->next;
            if (x->next) x->next->prev = x->prev;
        }
        wu_mutex_unlock(&d->lock);
        if (!busy) break;
        wu_xfer_reap(x, &actual);
    }
    if (x->tag) cq_remove(x);
    d->be->xfer_fini(x);
    free(x);
    wu_live_add(-1);
    device_unref(d);
}

int wu_xfer_state(wu_xfer *x) { return x ? WU_LOAD(&x->state) : WU_XFER_IDLE; }

void wu_xfer_retire(wu_xfer *x)
{
    if (!x || wu_device_forked(x->dev)) return;
    wu_mutex_lock(&x->dev->lock);
    x->retired = 1;
    wu_mutex_unlock(&x->dev->lock);
}

void wu_xfer_rearm(wu_xfer *x)
{
    if (!x || wu_device_forked(x->dev)) return;
    wu_mutex_lock(&x->dev->lock);
    x->cancel_sticky = 0;
    wu_mutex_unlock(&x->dev->lock);
}

/* The backend hands a transfer back; caller holds x->dev->lock. */
void wu_xfer_finish(wu_xfer *x, int result)
{
    if (x->type == WU_EP_ISOCHRONOUS && result != WU_OK) /* the packets it never reached */
        for (int i = 0; i < x->n_iso; i++)
            if (x->iso[i].status == WU_PENDING) x->iso[i].status = result;
    x->result = result;
    x->completed = 1;
    WU_STORE(&x->state, WU_XFER_DONE);
    if (x->tag) cq_push(x);
    if (x->note) wu_cq_note_post(x->note);
    if (x->demand) { /* the one release of the unit its submit (or its note) took */
        x->demand = 0;
        x->dev->be->events_demand(x->dev, -1);
    }
}

int wu_xfer_gone(wu_xfer *x)
{
    int rc = wu_device_check(x->dev);
    if (rc != WU_OK) return rc;
    wu_mutex_lock(&x->dev->lock);
    rc = x->retired ? WU_ERR_NO_DEVICE : WU_OK; /* what its next submit would say */
    wu_mutex_unlock(&x->dev->lock);
    return rc;
}

void wu_xfer_set_note(wu_xfer *x, wu_cq_note *n)
{
    wu_device *d = x->dev;
    wu_mutex_lock(&d->lock);
    x->note = n;
    /* armed while in flight: nobody may wait for it now (disarmed, it keeps its unit until back) */
    if (n && x->state == WU_XFER_IN_FLIGHT && !x->demand && d->be->events_demand &&
        d->be->events_demand(d, 1) == WU_OK)
        x->demand = 1;
    wu_mutex_unlock(&d->lock);
}

/* A control transfer's buffer is its setup packet followed by the data stage, as libusb lays
   it out: exactly 8 + wLength bytes, on endpoint 0, the data stage at most WU_CONTROL_MAX
   (Linux usbfs refuses more; every backend refuses it the same way), no ZLP flag. */
static int check_control(uint8_t ep, const uint8_t *buf, size_t len, unsigned flags)
{
    size_t w_length;
    if ((ep & 0x7F) != 0 || flags || !buf || len < WU_SETUP_SIZE) return WU_ERR_INVALID_PARAM;
    w_length = (size_t)buf[6] | (size_t)buf[7] << 8;
    if (w_length > WU_CONTROL_MAX || len != WU_SETUP_SIZE + w_length) return WU_ERR_INVALID_PARAM;
    return WU_OK;
}

/* An isochronous transfer: its packets set, their lengths adding up to len, no flags. Caller
   holds the device lock (wu_xfer_set_iso takes it: the packets checked are the packets moved). */
static int check_iso(const wu_xfer *x, uint8_t ep, size_t len, unsigned flags)
{
    size_t sum = 0;
    if (!x->iso || x->n_iso <= 0 || flags || !(ep & 0x0F)) return WU_ERR_INVALID_PARAM;
    for (int i = 0; i < x->n_iso; i++) sum += x->iso[i].length;
    return sum == len ? WU_OK : WU_ERR_INVALID_PARAM;
}

int wu_xfer_set_iso(wu_xfer *x, wu_iso_packet *packets, int n)
{
    int rc = WU_OK;
    if (!x || n < 0 || (n && !packets)) return WU_ERR_INVALID_PARAM;
    wu_mutex_lock(&x->dev->lock);
    if (x->state == WU_XFER_IN_FLIGHT) rc = WU_ERR_IN_FLIGHT;
    else {
        x->iso = n ? packets : NULL;
        x->n_iso = n;
    }
    wu_mutex_unlock(&x->dev->lock);
    return rc;
}

int wu_xfer_submit(wu_xfer *x, uint8_t ep, uint8_t type, uint8_t *buf, size_t len, unsigned flags,
                   int64_t timeout_us, uint64_t tag)
{
    wu_device *d;
    int rc, want_events;
    if (!x) return WU_ERR_INVALID_PARAM;
    if (!tag && wu_in_callback()) return WU_ERR_WRONG_CONTEXT; /* a synchronous send would deadlock */
    if (type == WU_EP_CONTROL) {
        if ((rc = check_control(ep, buf, len, flags)) != WU_OK) return rc;
    } else if (type != WU_EP_ISOCHRONOUS && type != WU_EP_BULK && type != WU_EP_INTERRUPT) {
        return WU_ERR_NOT_SUPPORTED;
    }
    if (!buf && len) return WU_ERR_INVALID_PARAM;
    if (flags & ~(unsigned)WU_XFER_ZLP) return WU_ERR_INVALID_PARAM;
    d = x->dev;
    if (!wu_device_usable(d)) return unusable_code(d);
    if (tag && (rc = d->be->start_events(d)) != WU_OK) return rc;
    wu_mutex_lock(&d->lock);
    if (x->state == WU_XFER_IN_FLIGHT) rc = WU_ERR_IN_FLIGHT;
    else if (d->closed || x->retired) rc = WU_ERR_NO_DEVICE;
    else if (x->cancel_sticky) rc = WU_ERR_CANCELLED;
    else if (type == WU_EP_ISOCHRONOUS) rc = check_iso(x, ep, len, flags); /* (its packets: under the lock) */
    else rc = WU_OK;
    if (rc != WU_OK) {
        x->cancel_sticky = 0; /* a cancel is consumed by the submit it refused */
        wu_mutex_unlock(&d->lock);
        return rc;
    }
    /* nobody may wait for it (asynchronous, or an armed ring's slot): it needs the event thread,
       which runs while any such transfer is in flight; the unit is taken before it can come back */
    want_events = (tag || x->note) && d->be->events_demand;
    if (want_events && (rc = d->be->events_demand(d, 1)) != WU_OK) {
        wu_mutex_unlock(&d->lock);
        return rc;
    }
    x->ep = type == WU_EP_CONTROL ? 0 : ep; /* EP0 either way: the setup packet says the direction */
    x->type = type;
    x->buf = buf;
    x->len = len;
    x->flags = flags;
    x->actual = 0;
    x->result = WU_OK;
    x->completed = 0;
    x->cancel_requested = 0;
    x->refined = 0;
    x->deadline_ns = WU_NS_FOREVER;
    if (timeout_us > 0) {
        int64_t now = wu_now_ns();
        if (timeout_us < (INT64_MAX - now) / 1000) x->deadline_ns = now + timeout_us * 1000; /* else: for ever */
    }
    x->tag = tag;
    x->seq = ++d->submits;
    if (type == WU_EP_ISOCHRONOUS)
        for (int i = 0; i < x->n_iso; i++) x->iso[i].actual = 0, x->iso[i].status = WU_PENDING;
    WU_STORE(&x->state, WU_XFER_IN_FLIGHT);
    rc = d->be->submit(x); /* under the lock: queued in the same step that marked it in flight */
    if (rc != WU_OK) {
        x->result = rc;
        x->tag = 0;
        WU_STORE(&x->state, WU_XFER_IDLE);
        if (want_events) d->be->events_demand(d, -1); /* never in flight: its unit goes back */
    } else {
        x->demand = want_events;
    }
    wu_mutex_unlock(&d->lock);
    return rc;
}

static void waiters_add(wu_xfer *x, int delta)
{
    wu_mutex_lock(&x->dev->lock);
    x->waiters += delta;
    wu_mutex_unlock(&x->dev->lock);
}

/* The result of a transfer that is back, refined once by the backend (an I/O error that is
   really an unplug). Not in a callback: the backend may ask the device. */
static int final_result(wu_xfer *x)
{
    wu_device *d = x->dev;
    int ask;
    if (x->result != WU_ERR_IO || !d->be->refine || wu_in_callback()) return x->result;
    wu_mutex_lock(&d->lock);
    ask = !x->refined && x->state == WU_XFER_DONE;
    x->refined = 1;
    x->waiters += ask;
    wu_mutex_unlock(&d->lock);
    if (ask) {
        d->be->refine(x);
        waiters_add(x, -1);
    }
    return x->result;
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
        if (rc == WU_PENDING) { /* still in flight: its count moves under the lock */
            if (actual) {
                wu_mutex_lock(&x->dev->lock);
                *actual = x->actual;
                wu_mutex_unlock(&x->dev->lock);
            }
            return WU_PENDING;
        }
        state = WU_LOAD(&x->state);
    }
    if (actual) *actual = x->actual;
    if (state == WU_XFER_IDLE) return x->result == WU_OK ? WU_ERR_NOT_FOUND : x->result;
    return final_result(x);
}

int wu_xfer_run(wu_xfer *x, uint8_t ep, uint8_t type, uint8_t *buf, size_t len, unsigned flags,
                int64_t timeout_us, int64_t slice_us, size_t *actual)
{
    int rc = wu_xfer_submit(x, ep, type, buf, len, flags, timeout_us, 0);
    if (rc != WU_OK) {
        if (actual) *actual = 0;
        return rc;
    }
    return wu_xfer_wait(x, slice_us, actual);
}

int wu_xfer_cancel(wu_xfer *x)
{
    int rc;
    if (!x) return WU_ERR_INVALID_PARAM;
    if (wu_device_forked(x->dev)) return WU_ERR_FORKED;
    wu_mutex_lock(&x->dev->lock);
    rc = cancel_locked(x);
    wu_mutex_unlock(&x->dev->lock);
    return rc;
}

int wu_xfer_cancel_in_flight(wu_xfer *x)
{
    int rc = WU_ERR_NOT_FOUND;
    if (wu_device_forked(x->dev)) return WU_ERR_FORKED;
    wu_mutex_lock(&x->dev->lock);
    if (x->state == WU_XFER_IN_FLIGHT) rc = cancel_locked(x); /* back already: nothing sticks */
    wu_mutex_unlock(&x->dev->lock);
    return rc;
}

int wu_xfer_reap(wu_xfer *x, size_t *actual)
{
    if (!x) return WU_ERR_INVALID_PARAM;
    if (wu_device_forked(x->dev)) return WU_ERR_FORKED;
    wu_mutex_lock(&x->dev->lock);
    if (x->state == WU_XFER_IN_FLIGHT && !x->cancel_requested) {
        x->cancel_requested = 1;
        x->dev->be->cancel(x);
    }
    x->waiters++;
    wu_mutex_unlock(&x->dev->lock);
    while (WU_LOAD(&x->state) == WU_XFER_IN_FLIGHT && x->dev->be->wait(x, WU_NS_FOREVER) == WU_PENDING) {
    }
    waiters_add(x, -1);
    if (actual) *actual = x->actual;
    return WU_LOAD(&x->state) == WU_XFER_DONE ? final_result(x) : x->result;
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
