/*
 * wdfusb shim internals: the device and transfer objects and the backend table
 * that the libusb backend and the virtual device both implement.
 */
#ifndef WU_SHIM_H
#define WU_SHIM_H

#include <stddef.h>
#include <stdint.h>

#include "platform.h"
#include "wdfusb_shim.h"

/* A note on the completion queue: "something of mine came back". Posted (by whoever hands a
   transfer back) only while armed with a tag, and at most once until wu_cq_wait takes it, so
   it coalesces; every field is guarded by the queue's lock. A ring carries one (wu_ring_notify). */
typedef struct wu_cq_note {
    struct wu_cq_note *next;
    uint64_t tag;                /* 0: not armed, nothing is posted */
    int queued;
} wu_cq_note;

void wu_cq_note_arm(wu_cq_note *n, uint64_t tag); /* tag 0 disarms and takes a queued post back */
void wu_cq_note_post(wu_cq_note *n);              /* queue it unless disarmed or already queued */

typedef struct wu_backend {
    /* transfers: submit starts x and cancel cancels it asynchronously, both called with
       dev->lock held (so a transfer is queued in the same step that marks it in flight);
       wait drives x until it is DONE or the clock reaches until_ns (then WU_PENDING),
       called without the lock */
    int (*xfer_init)(wu_xfer *x);
    void (*xfer_fini)(wu_xfer *x);
    int (*submit)(wu_xfer *x);
    int (*wait)(wu_xfer *x, int64_t until_ns);
    int (*cancel)(wu_xfer *x);
    /* a transfer came back with WU_ERR_IO: the backend may name the cause better (a device
       that is gone); called once per submission, outside every lock and callback, or NULL */
    void (*refine)(wu_xfer *x);
    /* device operations */
    int (*speed)(wu_device *d);
    int (*get_descriptor)(wu_device *d, uint8_t type, uint8_t index, uint16_t langid, uint8_t *buf, int len);
    int (*get_configuration)(wu_device *d, int *config);
    int (*set_configuration)(wu_device *d, int config);
    int (*claim_interface)(wu_device *d, int iface);
    int (*release_interface)(wu_device *d, int iface);
    int (*set_altsetting)(wu_device *d, int iface, int alt);
    int (*clear_halt)(wu_device *d, uint8_t ep);
    int (*reset_port)(wu_device *d);  /* a port reset: nothing is in flight (the engine drained it) */
    int (*cycle_port)(wu_device *d);  /* off the bus and back (re-enumerated): nothing is in flight */
    int (*kernel_driver)(wu_device *d, int iface, int op); /* enum wu_kdriver: 1/0 (query) or a code */
    /* make transfers progress with nobody waiting (first asynchronous submit, a ring armed) */
    int (*start_events)(wu_device *d);
    /* wait until no transfer of d is in flight (after they were cancelled) */
    void (*drain)(wu_device *d);
    void (*close)(wu_device *d);    /* release the backend's hold on the device */
    void (*destroy)(wu_device *d);  /* free the backend state (last reference gone) */
    /* the event thread's demand, or NULL (a thread that runs anyway): +1 when a transfer that
       nobody may wait for (tagged, or carrying a note) goes in flight, -1 when it is back;
       called with dev->lock held. +1 may fail (no thread): the submit then fails. */
    int (*events_demand)(wu_device *d, int delta);
} wu_backend;

struct wu_device {
    const wu_backend *be;
    wu_mutex lock;     /* guards everything below, every transfer's fields and backend state */
    int refs;          /* the owner's, plus one per transfer */
    int closed;        /* atomic: set once, under lock */
    int freed;         /* the owner let go */
    int virtual_device;
    int fork_gen;      /* wu_fork_generation() when opened: unusable in a forked child */
    uint64_t submits;  /* numbers transfers in submission order */
    wu_xfer *xfers;    /* every transfer of this device */
    void *impl;
};

struct wu_xfer {
    wu_device *dev;
    wu_xfer *next, *prev;        /* in dev->xfers */
    uint64_t owner;              /* who made it (wu_device_cancel by owner) */
    int state;                   /* enum wu_xfer_state; written under lock, read with WU_LOAD */
    int completed;               /* libusb's completion flag */
    int cancel_requested;        /* this submission was cancelled */
    int cancel_sticky;           /* a cancel that found it idle: the next submit fails */
    int retired;                 /* no more submits (its owner let go, or the device closes) */
    int waiters;                 /* threads inside wu_xfer_wait / wu_xfer_reap */
    int refined;                 /* be->refine ran for this submission */
    uint64_t seq;                /* submission order on the device */
    uint8_t ep, type;
    unsigned flags;
    uint8_t *buf;
    size_t len, actual;
    int64_t deadline_ns;         /* WU_NS_FOREVER: none */
    int result;
    void *impl;                  /* backend's per-transfer object */
    size_t piece, piece_unit;    /* libusb: bytes per libusb transfer, and the max packet size
                                    pieces are multiples of (a short packet would end it) */
    wu_iso_packet *iso;          /* isochronous: the caller's packets (wu_xfer_set_iso), or NULL */
    int n_iso;
    size_t iso_offset;           /* virtual device: where packet x->pkts starts in buf */
    int impl_packets;            /* libusb: the iso packet descriptors x->impl has room for */
    uint64_t tag;                /* != 0: asynchronous, completion goes to the queue */
    int queued;                  /* on the completion queue (guarded by the queue's lock) */
    wu_xfer *cq_next;
    wu_cq_note *note;            /* posted whenever it comes back (an armed ring's slot), or NULL */
    int demand;                  /* this submission holds one unit of be->events_demand */
    /* virtual device: queue link and pacing */
    wu_xfer *qnext;
    int linked;                  /* on its endpoint's queue */
    int started;
    int64_t start_ns;
    uint64_t pkt_base, pkts, total_pkts;
    /* virtual device, EP0: a request handed to the device's function (wu_virtual_next_request) */
    uint64_t ctl_id;             /* 0: not handed out */
    int ctl_answer;              /* 0: not answered yet, 1: answered, -1: refused (a stall) */
};

extern const wu_backend wu_libusb_backend;
extern const wu_backend wu_virtual_backend;

wu_device *wu_device_alloc(const wu_backend *be, void *impl, int is_virtual);
void wu_xfer_finish(wu_xfer *x, int result);   /* caller holds x->dev->lock */
void wu_xfer_set_note(wu_xfer *x, wu_cq_note *n); /* any time: read under the device lock */
int wu_xfer_cancel_in_flight(wu_xfer *x);      /* cancel it if it is in flight; unlike wu_xfer_cancel,
                                                  a transfer already back keeps no cancel for its
                                                  next submit (the ring's own error guards those) */
int wu_xfer_gone(wu_xfer *x);                  /* WU_OK, or why it can take no more submits: its
                                                  device closed or forked, or its owner let go */
int wu_in_callback(void);                      /* inside a completion / event thread */
void wu_enter_callback(void);
void wu_leave_callback(void);
void wu_live_add(int delta);
int wu_device_usable(wu_device *d);            /* not closed, not from before a fork */
int wu_device_forked(wu_device *d);            /* opened before this process forked */

#endif
