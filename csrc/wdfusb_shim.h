/*
 * wdfusb C shim: the public interface of the native transfer engine.
 *
 * This file is both the C header the shim is compiled with and the cffi
 * `cdef` (build_ffi.py reads it verbatim), so the two cannot drift. It must
 * therefore stay free of preprocessor lines and of anything cffi cannot parse.
 *
 * One engine, two backends behind one table: libusb (real devices) and the
 * built-in virtual device. Callers never see which one they talk to.
 */

/* ---- status codes: libusb's error numbers, plus the shim's own ---------- */
enum wu_status {
    WU_OK = 0,
    WU_PENDING = 1,               /* wait slice ended; transfer still in flight */
    WU_ERR_IO = -1,
    WU_ERR_INVALID_PARAM = -2,
    WU_ERR_ACCESS = -3,
    WU_ERR_NO_DEVICE = -4,
    WU_ERR_NOT_FOUND = -5,
    WU_ERR_BUSY = -6,
    WU_ERR_TIMEOUT = -7,
    WU_ERR_OVERFLOW = -8,
    WU_ERR_PIPE = -9,             /* endpoint halted (stall) */
    WU_ERR_INTERRUPTED = -10,
    WU_ERR_NO_MEM = -11,
    WU_ERR_NOT_SUPPORTED = -12,
    WU_ERR_OTHER = -99,
    WU_ERR_CANCELLED = -100,      /* cancelled by wu_xfer_cancel / abort */
    WU_ERR_WRONG_CONTEXT = -101,  /* called from the event thread or a completion */
    WU_ERR_NO_LIBUSB = -102,      /* no libusb loaded */
    WU_ERR_IN_FLIGHT = -103,      /* the transfer object is already submitted */
    WU_ERR_FORKED = -104          /* the device was opened before os.fork(): unusable here */
};

/* USB endpoint transfer types (bmAttributes & 3) */
enum wu_ep_type { WU_EP_CONTROL = 0, WU_EP_ISOCHRONOUS = 1, WU_EP_BULK = 2, WU_EP_INTERRUPT = 3 };

/* bus speeds, numbered as libusb numbers them; NONE = virtual device without pacing */
enum wu_speed { WU_SPEED_NONE = 0, WU_SPEED_LOW = 1, WU_SPEED_FULL = 2, WU_SPEED_HIGH = 3,
                WU_SPEED_SUPER = 4, WU_SPEED_SUPER_PLUS = 5 };

/* control transfers: the buffer is the 8-byte setup packet, then the data stage (as libusb
   lays it out); the transfer's actual length counts the data stage only */
enum wu_control { WU_SETUP_SIZE = 8, WU_CONTROL_MAX = 4096 };

/* transfer flags */
enum wu_xfer_flag { WU_XFER_ZLP = 1 };   /* OUT: end a max-packet multiple with a ZLP */

/* transfer states */
enum wu_xfer_state { WU_XFER_IDLE = 0, WU_XFER_IN_FLIGHT = 1, WU_XFER_DONE = 2 };

typedef struct wu_device wu_device;
typedef struct wu_xfer wu_xfer;

/* ---- build identity ------------------------------------------------------ */
const char *wu_shim_version(void);          /* the package version compiled in */
int wu_sizeof_check(void);                  /* 0 when the ABI assumptions hold */

/* ---- libusb loading ------------------------------------------------------ */
int wu_libusb_load(const char *path, char *err, size_t errlen);
int wu_libusb_loaded(void);
const char *wu_libusb_version(void);        /* "major.minor.micro.nano" or "" */
const char *wu_libusb_path(void);

/* ---- enumeration (libusb) ------------------------------------------------ */
typedef struct {
    uint8_t bus;
    uint8_t address;
    uint8_t speed;                /* enum wu_speed */
    uint8_t port_count;
    uint8_t ports[8];
    uint8_t device_descriptor[18];
} wu_devinfo;

int wu_libusb_list(wu_devinfo *out, int max);     /* count (may exceed max) or error */
int wu_libusb_open(uint8_t bus, uint8_t address, wu_device **out);
/* The driver of bus `bus`'s host controller ("vhci_hcd": USB/IP's virtual one), as sysfs under
   `sysfs` ("/sys") says: its length, 0 and "" where unknown (not Linux, no such bus). */
int wu_bus_controller_driver(const char *sysfs, unsigned bus, char *name, size_t size);

/* ---- arrival and removal ------------------------------------------------- */
/* A counter that moves whenever a device may have arrived or left (libusb's hotplug events,
   virtual devices listed, unplugged or closed). wu_hotplug_wait returns it once it differs
   from seen, or after timeout_us (< 0: no limit). wu_libusb_hotplug registers libusb's hotplug
   callback: 1 when the platform reports arrivals and removals, 0 when callers must poll, or an
   error. libusb delivers them only while a thread handles its events: a watch holds the event
   thread with wu_libusb_hotplug_hold(1) while it lives and lets go with wu_libusb_hotplug_hold(0)
   (WU_ERR_INVALID_PARAM when no hold is left to let go). */
uint64_t wu_hotplug_wait(uint64_t seen, int64_t timeout_us);
void wu_hotplug_bump(void);   /* the list may have changed (a virtual device is listed from now on) */
int wu_libusb_hotplug(void);
int wu_libusb_hotplug_hold(int on);
/* The libusb event thread (for tests): -1 not started, 0 idle (out of libusb, nothing needs it),
   1 handling events; *demand (unless NULL): the asynchronous and armed ring transfers in flight
   plus the hotplug holds. idles: how often it went idle. */
int wu_libusb_event_thread_state(int *demand);
uint64_t wu_libusb_event_thread_idles(void);

/* ---- the virtual device -------------------------------------------------- */
/* SINK takes data; LOOPBACK_OUT takes data and feeds LOOPBACK_IN, which returns it in
   order; SWITCH reports a one-byte switch state each time it changes */
enum wu_vep_role { WU_ROLE_SINK = 0, WU_ROLE_LOOPBACK_OUT = 1, WU_ROLE_LOOPBACK_IN = 2,
                   WU_ROLE_SWITCH = 3 };

/* an IN endpoint made a source (wu_virtual_source): full packets at the bus rate; MOD63:
   byte j of each packet is j % 63 (Gadget Zero's pattern=1); COUNTER: a little-endian uint32
   count across the stream */
enum wu_vsource { WU_SOURCE_NONE = 0, WU_SOURCE_ZEROS = 1, WU_SOURCE_MOD63 = 2, WU_SOURCE_COUNTER = 3 };

typedef struct {
    uint8_t address;              /* bit 7 = IN */
    uint8_t type;                 /* enum wu_ep_type */
    uint16_t max_packet;
    uint8_t interval;             /* bInterval as in the descriptor */
    uint8_t role;                 /* enum wu_vep_role */
    uint8_t alt;                  /* the alternate setting of interface 0 it belongs to */
} wu_vep_config;

typedef struct {
    int speed;                    /* enum wu_speed; WU_SPEED_NONE = no pacing */
    const wu_vep_config *endpoints;
    int n_endpoints;
    size_t loopback_capacity;     /* bytes the OUT sink keeps for the IN loopback (allocated
                                     when first fed) */
    const uint8_t *descriptors;   /* records: type u8, index u8, length u16 (LE), bytes */
    size_t descriptors_len;
    int n_alts;                   /* alternate settings of interface 0 (at least 1) */
} wu_vdev_config;

typedef struct {
    uint64_t received_bytes;      /* OUT: bytes taken from the host */
    uint64_t sent_bytes;          /* IN: bytes given to the host */
    uint64_t transfers;           /* transfers completed on this endpoint */
    uint32_t crc32;               /* zlib CRC-32 of every byte received */
    uint32_t halted;
    uint64_t loopback_dropped;    /* bytes dropped because the loopback was full */
    uint64_t zero_length_packets; /* OUT: zero-length packets received (ZLPs) */
    uint32_t source;              /* enum wu_vsource: what it is a source of, if anything */
} wu_vep_stats;

/* A control request the virtual device's function answers (vendor and class requests, once
   wu_virtual_set_function(dev, 1)): its setup packet and, for host-to-device requests, its data. */
typedef struct {
    uint64_t id;
    uint8_t setup[8];
    uint16_t length;              /* the data stage's length (wLength) */
    uint8_t data[4096];           /* host-to-device: what the host sent */
} wu_vrequest;

int wu_virtual_create(const wu_vdev_config *config, wu_device **out);
int wu_virtual_source(wu_device *dev, uint8_t ep, int pattern); /* enum wu_vsource; NONE: its role again */
int wu_virtual_set_function(wu_device *dev, int on);  /* on: vendor/class requests wait for an answer */
int wu_virtual_next_request(wu_device *dev, int64_t timeout_us, wu_vrequest *out);
                                                     /* WU_OK, WU_ERR_TIMEOUT (none), WU_ERR_NO_DEVICE */
int wu_virtual_answer(wu_device *dev, uint64_t id, int result, const uint8_t *data, size_t len);
                                                     /* result WU_OK (data: the IN data stage) or
                                                        WU_ERR_PIPE (a stall); WU_ERR_NOT_FOUND when
                                                        the request is no longer waiting */
int wu_virtual_ep_stats(wu_device *dev, uint8_t ep, wu_vep_stats *out);
int wu_virtual_stall(wu_device *dev, uint8_t ep);
int wu_virtual_nak(wu_device *dev, uint8_t ep, double seconds);
int wu_virtual_unplug(wu_device *dev);
int wu_virtual_set_switch(wu_device *dev, uint8_t value);
int wu_virtual_get_switch(wu_device *dev, uint8_t *value);

/* ---- device operations (either backend) ---------------------------------- */
int wu_device_is_virtual(wu_device *dev);
int wu_device_check(wu_device *dev);   /* WU_OK while usable, else why not (closed, forked) */
int wu_device_speed(wu_device *dev);
int wu_device_get_descriptor(wu_device *dev, uint8_t type, uint8_t index, uint16_t langid,
                             uint8_t *buf, int len);          /* length or error */
int wu_device_get_configuration(wu_device *dev, int *config);
int wu_device_set_configuration(wu_device *dev, int config);
int wu_device_claim_interface(wu_device *dev, int iface);
int wu_device_release_interface(wu_device *dev, int iface);
int wu_device_set_altsetting(wu_device *dev, int iface, int alt);
int wu_device_clear_halt(wu_device *dev, uint8_t ep);
enum wu_kdriver { WU_KDRIVER_ACTIVE = 0, WU_KDRIVER_DETACH = 1, WU_KDRIVER_ATTACH = 2 };
int wu_device_kernel_driver(wu_device *dev, int iface, int op); /* ACTIVE: 1/0; else a code */
int wu_device_reset_port(wu_device *dev);   /* cancel and drain every transfer, then reset the port:
                                               halts and data toggles cleared, the configuration kept */
int wu_device_cycle_port(wu_device *dev);   /* cancel and drain every transfer, then take the device
                                               off the bus and back: it re-enumerates as a new
                                               attachment, this one is gone (libusb: the port's power,
                                               where the OS lets a program switch it; else
                                               WU_ERR_NOT_SUPPORTED or WU_ERR_ACCESS) */
int wu_device_cancel(wu_device *dev, int ep, uint64_t owner, int retire);
                                /* cancel (newest first) and drain every transfer in flight on ep
                                   (-1: every endpoint) of owner (0: every owner); retire != 0 also
                                   refuses their later submits */
int wu_device_live_transfers(wu_device *dev);       /* transfers in flight */
int wu_device_close(wu_device *dev);   /* cancel, drain, release the device; later calls fail */
void wu_device_free(wu_device *dev);   /* the owner lets go (closes first); freed with its last transfer */

/* ---- transfers: one descriptor, one path --------------------------------------
   A transfer is IDLE until submitted, IN_FLIGHT until the backend hands it back, then DONE
   with its result and the bytes it moved (also on error). A cancel reaches it whatever its
   state: in flight it is cancelled, otherwise the cancel sticks and its next submit fails
   with WU_ERR_CANCELLED (wu_xfer_rearm forgets it). tag != 0 makes the submit asynchronous:
   the completion is queued for wu_cq_wait. A transfer is freed only by its owner, and never
   while it is in flight (wu_xfer_free cancels and reaps first). */
int wu_xfer_new(wu_device *dev, uint64_t owner, wu_xfer **out);
void wu_xfer_free(wu_xfer *x);
int wu_xfer_state(wu_xfer *x);
int wu_xfer_submit(wu_xfer *x, uint8_t ep, uint8_t type, uint8_t *buf, size_t len,
                   unsigned flags, int64_t timeout_us, uint64_t tag);  /* timeout_us <= 0: none */
int wu_xfer_wait(wu_xfer *x, int64_t slice_us, size_t *actual);  /* WU_PENDING or final */
int wu_xfer_run(wu_xfer *x, uint8_t ep, uint8_t type, uint8_t *buf, size_t len,
                unsigned flags, int64_t timeout_us, int64_t slice_us, size_t *actual);
/* Isochronous transfers (type WU_EP_ISOCHRONOUS) go on the same path: wu_xfer_set_iso gives the
   transfer its packets before the submit (while it is not in flight; the array is the caller's
   and stays alive until the transfer is back). The buffer holds the packets end to end (packet
   i at the sum of the lengths before it; len is their sum); each packet is at most the
   endpoint's max packet size and the transfer moves one per service interval. Once it is back,
   each packet has its own actual length and status (WU_PENDING: never reached, the transfer
   ended first), the transfer's actual length is their sum, and its result WU_OK also when
   packets failed (as on the bus: isochronous data is not retried). n = 0 forgets the packets. */
typedef struct {
    uint32_t length;              /* requested */
    uint32_t actual;              /* moved */
    int status;                   /* engine code of this packet */
} wu_iso_packet;

int wu_xfer_set_iso(wu_xfer *x, wu_iso_packet *packets, int n); /* WU_ERR_IN_FLIGHT while in flight */
int wu_xfer_cancel(wu_xfer *x);               /* any thread; WU_OK if it was in flight */
void wu_xfer_rearm(wu_xfer *x);               /* forget a cancel that stuck (WdfRequestReuse) */
void wu_xfer_retire(wu_xfer *x);              /* refuse every later submit (its owner let go) */
int wu_xfer_reap(wu_xfer *x, size_t *actual); /* cancel, then wait until it is back */
int wu_live_objects(void);                    /* devices, transfers and rings not yet freed */

/* ---- asynchronous completions: one queue ---------------------------------------- */
typedef struct {
    uint64_t tag;                 /* what the submitter passed */
    int status;                   /* engine result */
    size_t actual;
} wu_completion;

int wu_cq_wait(int64_t timeout_us, wu_completion *out, int max); /* count; 0 = none in time */
void wu_cq_wake(void);                        /* make one wu_cq_wait return now */
void wu_set_completion_context(int on);       /* this thread runs completions (nests) */
int wu_in_completion_context(void);           /* refuse blocking calls when true */

/* ---- streaming: a ring of transfers on one pipe, driven in C -----------------------
   depth transfers of up to chunk bytes, retired strictly in submission order, with
   depth + 1 page-aligned staging buffers: a submit carries the one wu_ring_stage handed out
   (filled by the caller) or the caller's own memory, which the caller keeps alive until
   info.retired reaches info.submitted as it was after that submit. The time-out counts for each
   transfer from the moment it is the oldest in flight. The first failure (error, time-out,
   wu_ring_cancel from any thread) fails the ring for good: nothing more is submitted, every
   transfer still in flight is cancelled newest first and reaped, and bytes_done counts
   exactly the bytes that moved, always a prefix of the stream.
   On an IN pipe the ring is a reader: it keeps depth reads of chunk bytes in flight itself
   (from the first wu_ring_read/wu_ring_next on), straight into the caller's buffer while a
   whole chunk of it is free behind the reads in flight, else into a staging buffer; what
   arrives is delivered in order, a short read's bytes closing up behind the ones before.
   The time-out counts from when a read is the oldest and a caller waits. A time-out or an
   interrupt (WU_ERR_INTERRUPTED) stops it on a prefix and the next call resumes; any other
   failure, or a wu_ring_cancel, is final once what arrived before it has been delivered.
   slice_us: how long one call may wait before it returns WU_PENDING (0: as long as it takes;
   < 0: not at all, WU_PENDING where it would wait). With wu_ring_notify, a caller that does not
   wait (an event loop) is told through the completion queue when to call again. */
typedef struct wu_ring wu_ring;
typedef struct {
    int depth;
    int in_flight;
    int peak;                     /* most transfers ever in flight at once */
    int error;                    /* first failure (engine code) or WU_OK */
    uint64_t bytes_done;          /* writer: actual lengths of every transfer retired;
                                     reader: bytes delivered to the caller */
    uint64_t submitted;           /* transfers submitted so far */
    uint64_t retired;             /* transfers retired so far (in order) */
    uint64_t buffered;            /* reader: bytes arrived and not yet delivered */
    int64_t timeout_in_us;        /* until the oldest in flight times out (a reader's: while a
                                     call is in progress), or -1 when no time-out runs */
} wu_ring_info;

int wu_ring_new(wu_device *dev, uint64_t owner, uint8_t ep, uint8_t type, int depth, size_t chunk,
                int64_t timeout_us, wu_ring **out);
void wu_ring_free(wu_ring *r);                       /* cancels and reaps first */
uint8_t *wu_ring_stage(wu_ring *r);                  /* the staging buffer to fill (chunk bytes) */
int wu_ring_submit(wu_ring *r, uint8_t *buf, size_t len, unsigned flags); /* WU_ERR_BUSY when full */
int wu_ring_wait(wu_ring *r, int64_t slice_us);      /* retire the oldest: WU_OK, WU_PENDING or the error */
int wu_ring_poll(wu_ring *r);                        /* retire what is back, without waiting */
int wu_ring_run(wu_ring *r, uint8_t *buf, size_t len, unsigned flags, int64_t slice_us, size_t *done,
                wu_ring_info *info);                 /* submit buf in chunks, retiring as needed;
                                                        *done: bytes of buf submitted so far; *info
                                                        (if not NULL): the ring as the call left it */
int wu_ring_read(wu_ring *r, uint8_t *dst, size_t len, int fresh, int64_t slice_us, size_t *done,
                 wu_ring_info *info);                /* reader: fill dst (fresh: a new read; else the
                                                        same dst and len as the call that returned
                                                        WU_PENDING, or after a wu_ring_cancel, to end
                                                        it): WU_OK when full, WU_PENDING, or the error;
                                                        *done: bytes of dst filled; WU_ERR_BUSY while
                                                        another thread reads */
int wu_ring_next(wu_ring *r, size_t max, int fresh, int64_t slice_us, uint8_t **data, size_t *len,
                 wu_ring_info *info);                /* reader: the oldest arrived data, up to max
                                                        bytes, valid until the next call */
int wu_ring_interrupt(wu_ring *r, size_t *done);     /* reader, the reading thread, leaving a call by
                                                        an exception (Ctrl-C): stop every read (they
                                                        land, in order) and end the call's read; *done:
                                                        the bytes of its buffer filled */
int wu_ring_cancel(wu_ring *r, int reason);          /* any thread; returns the ring's error */
int wu_ring_notify(wu_ring *r, uint64_t tag);        /* tag != 0: from now on, whenever a transfer of
                                                        the ring comes back or wu_ring_cancel ends it,
                                                        queue {tag, WU_OK, 0} for wu_cq_wait (one at a
                                                        time: none while one is queued), and make the
                                                        device's transfers move with nobody waiting;
                                                        0: no more */
void wu_ring_info_get(wu_ring *r, wu_ring_info *out);

/* ---- helpers ------------------------------------------------------------- */
uint32_t wu_crc32(uint32_t crc, const uint8_t *buf, size_t len);
int wu_bench_loop(wu_xfer *x, uint8_t ep, uint8_t type, uint8_t *buf, size_t len,
                  uint64_t count, int64_t timeout_us, double *seconds);
