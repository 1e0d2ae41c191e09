/*
 * The engine built for another operating system, exercised without Python.
 *
 * tests/cross/run.sh builds this file with the shim's sources for Windows (MinGW-w64)
 * and runs it under Wine: the parts of the shim that differ there (threads, condition
 * variables, the clock, thread-local storage, loading a DLL) carry real transfers on
 * the virtual device. Exit status 0 when every check holds; each failure is printed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim.h"

#define EP_SINK 0x06
#define CHUNK (64 * 1024)
#define TOTAL (4 * 1024 * 1024)

static int failures;

#define CHECK(cond, ...)                                             \
    do {                                                             \
        if (!(cond)) {                                               \
            failures++;                                              \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);   \
            printf(__VA_ARGS__);                                     \
            printf("\n");                                            \
        }                                                            \
    } while (0)

static double seconds_since(int64_t t0) { return (double)(wu_now_ns() - t0) / 1e9; }

static wu_device *open_sink(int speed)
{
    static const wu_vep_config eps[] = {{EP_SINK, WU_EP_BULK, 512, 0, WU_ROLE_SINK, 0}};
    wu_vdev_config cfg = {speed, eps, 1, 0, NULL, 0, 1};
    wu_device *d = NULL;
    int rc = wu_virtual_create(&cfg, &d);
    CHECK(rc == WU_OK && d, "wu_virtual_create: %d", rc);
    return d;
}

static wu_xfer *new_xfer(wu_device *d)
{
    wu_xfer *x = NULL;
    int rc = wu_xfer_new(d, 0, &x);
    CHECK(rc == WU_OK && x, "wu_xfer_new: %d", rc);
    return x;
}

static void check_received(wu_device *d, const uint8_t *data, size_t n, const char *what)
{
    wu_vep_stats st;
    CHECK(wu_virtual_ep_stats(d, EP_SINK, &st) == WU_OK, "%s: stats", what);
    CHECK(st.received_bytes == n, "%s: device received %llu of %llu bytes", what,
          (unsigned long long)st.received_bytes, (unsigned long long)n);
    CHECK(st.crc32 == wu_crc32(0, data, n), "%s: CRC of what arrived", what);
}

/* Synchronous writes at high speed take the time the bus model says: the clock works. */
static void sync_writes_are_paced(const uint8_t *data)
{
    wu_device *d = open_sink(WU_SPEED_HIGH);
    wu_xfer *x = new_xfer(d);
    int64_t t0 = wu_now_ns();
    double s, rate;
    for (size_t off = 0; off < TOTAL; off += CHUNK) {
        size_t actual = 0;
        int rc = wu_xfer_run(x, EP_SINK, WU_EP_BULK, (uint8_t *)data + off, CHUNK, 0, 0, 0, &actual);
        CHECK(rc == WU_OK && actual == CHUNK, "write at %zu: rc %d, %zu bytes", off, rc, actual);
    }
    s = seconds_since(t0);
    rate = TOTAL / s / 1e6;
    printf("sync: 4 MiB in 64 KiB writes at high speed: %.2f MB/s (model 53.248)\n", rate);
    /* never faster than the bus; whole-millisecond waits would make it 0.6-0.8x */
    CHECK(rate > 53.248 * 0.85 && rate < 53.248 * 1.02, "rate %.2f MB/s", rate);
    check_received(d, data, TOTAL, "sync");
    wu_xfer_free(x);
    wu_device_free(d);
}

/* Asynchronous transfers: the device's event thread completes them, the queue wakes us. */
static void async_completions_arrive_in_order(const uint8_t *data)
{
    enum { N = 16 };
    wu_device *d = open_sink(WU_SPEED_SUPER);
    wu_xfer *x[N];
    wu_completion got[N];
    int n = 0;
    int64_t t0 = wu_now_ns();
    for (int i = 0; i < N; i++) {
        x[i] = new_xfer(d);
        CHECK(wu_xfer_submit(x[i], EP_SINK, WU_EP_BULK, (uint8_t *)data + (size_t)i * CHUNK, CHUNK, 0, 0,
                                   (uint64_t)i + 1) == WU_OK,
              "submit %d", i);
    }
    while (n < N && seconds_since(t0) < 10) n += wu_cq_wait(100000, got + n, N - n);
    CHECK(n == N, "%d of %d completions", n, N);
    for (int i = 0; i < n; i++)
        CHECK(got[i].tag == (uint64_t)i + 1 && got[i].status == WU_OK && got[i].actual == CHUNK,
              "completion %d: tag %llu status %d actual %zu", i, (unsigned long long)got[i].tag, got[i].status,
              got[i].actual);
    check_received(d, data, (size_t)N * CHUNK, "async");
    for (int i = 0; i < N; i++) wu_xfer_free(x[i]);
    wu_device_free(d);
}

/* A write the device NAKs ends at its time-out (the clock and timed condition waits). */
static void a_nak_ends_at_the_timeout(const uint8_t *data)
{
    wu_device *d = open_sink(WU_SPEED_HIGH);
    wu_xfer *x = new_xfer(d);
    size_t actual = 1;
    int64_t t0;
    double s;
    int rc;
    wu_virtual_nak(d, EP_SINK, 60.0);
    t0 = wu_now_ns();
    rc = wu_xfer_run(x, EP_SINK, WU_EP_BULK, (uint8_t *)data, CHUNK, 0, 200000, 0, &actual);
    s = seconds_since(t0);
    printf("timeout: 200 ms time-out ended after %.1f ms\n", s * 1e3);
    CHECK(rc == WU_ERR_TIMEOUT && actual == 0, "rc %d, %zu bytes", rc, actual);
    CHECK(s > 0.19 && s < 0.30, "took %.3f s", s);
    wu_xfer_free(x);
    wu_device_free(d);
}

struct canceller {
    wu_xfer *x;
    int64_t delay_ns;
    int rc;
};

static void *cancel_later(void *arg)
{
    struct canceller *c = arg;
    int64_t until = wu_now_ns() + c->delay_ns;
    while (wu_now_ns() < until) {
    }
    c->rc = wu_xfer_cancel(c->x);
    return NULL;
}

/* Another thread cancels a blocked write: the waiter wakes with the cancel. */
static void another_thread_cancels(const uint8_t *data)
{
    wu_device *d = open_sink(WU_SPEED_HIGH);
    struct canceller c;
    struct wu_thread *t;
    size_t actual = 1;
    int rc;
    c.x = new_xfer(d);
    c.delay_ns = 100000000;
    c.rc = 1;
    wu_virtual_nak(d, EP_SINK, 60.0);
    t = wu_thread_start(cancel_later, &c);
    CHECK(t != NULL, "wu_thread_start");
    rc = wu_xfer_run(c.x, EP_SINK, WU_EP_BULK, (uint8_t *)data, CHUNK, 0, 0, 0, &actual);
    if (t) wu_thread_join(t);
    CHECK(rc == WU_ERR_CANCELLED && actual == 0 && c.rc == WU_OK, "rc %d, cancel rc %d, %zu bytes", rc, c.rc,
          actual);
    CHECK(wu_device_live_transfers(d) == 0, "transfers in flight after the cancel");
    wu_xfer_free(c.x);
    wu_device_free(d);
}

static void *in_context(void *arg)
{
    *(int *)arg = wu_in_completion_context();
    return NULL;
}

/* The completion-routine flag is per thread (thread-local storage) and refuses sync calls. */
static void completion_context_is_per_thread(const uint8_t *data)
{
    wu_device *d = open_sink(WU_SPEED_NONE);
    wu_xfer *x = new_xfer(d);
    int other = -1;
    size_t actual = 0;
    struct wu_thread *t;
    wu_set_completion_context(1);
    t = wu_thread_start(in_context, &other);
    if (t) wu_thread_join(t);
    CHECK(wu_in_completion_context() == 1 && other == 0, "here %d, other thread %d", wu_in_completion_context(),
          other);
    CHECK(wu_xfer_run(x, EP_SINK, WU_EP_BULK, (uint8_t *)data, 512, 0, 0, 0, &actual) == WU_ERR_WRONG_CONTEXT,
          "a synchronous call from a completion routine");
    wu_set_completion_context(0);
    wu_xfer_free(x);
    wu_device_free(d);
}

/* The C ring streams a buffer with four transfers in flight; cancelled midway from another
   thread, the device holds exactly the prefix the ring counted. */
struct ring_cancel {
    wu_ring *r;
    int64_t delay_ns;
};

static void *cancel_ring_later(void *arg)
{
    struct ring_cancel *c = arg;
    int64_t until = wu_now_ns() + c->delay_ns;
    while (wu_now_ns() < until) {
    }
    wu_ring_cancel(c->r, WU_ERR_CANCELLED);
    return NULL;
}

static void ring_streams_and_stops_on_a_prefix(const uint8_t *data)
{
    wu_device *d = open_sink(WU_SPEED_HIGH);
    wu_ring *r = NULL;
    wu_ring_info info;
    struct ring_cancel c;
    struct wu_thread *t;
    size_t done = 0;
    int rc = wu_ring_new(d, 0, EP_SINK, WU_EP_BULK, 4, 32 * 1024, 0, &r);
    CHECK(rc == WU_OK && r, "wu_ring_new: %d", rc);
    while ((rc = wu_ring_run(r, (uint8_t *)data, TOTAL / 4, 0, 5000, &done, NULL)) == WU_PENDING) {
    }
    CHECK(rc == WU_OK && done == TOTAL / 4, "ring: rc %d done %zu", rc, done);
    wu_ring_info_get(r, &info);
    while (info.in_flight) { /* what is still in flight, oldest first */
        CHECK(wu_ring_wait(r, 0) == WU_OK, "ring drain");
        wu_ring_info_get(r, &info);
    }
    CHECK(info.bytes_done == TOTAL / 4 && info.peak == 4, "ring counted %llu, peak %d",
          (unsigned long long)info.bytes_done, info.peak);
    check_received(d, data, TOTAL / 4, "ring");
    wu_ring_free(r);
    wu_device_free(d);

    d = open_sink(WU_SPEED_HIGH); /* again, cancelled from another thread after ~30 ms */
    rc = wu_ring_new(d, 0, EP_SINK, WU_EP_BULK, 4, 32 * 1024, 0, &r);
    CHECK(rc == WU_OK && r, "wu_ring_new: %d", rc);
    c.r = r;
    c.delay_ns = 30000000;
    t = wu_thread_start(cancel_ring_later, &c);
    CHECK(t != NULL, "wu_thread_start");
    done = 0;
    while ((rc = wu_ring_run(r, (uint8_t *)data, TOTAL, 0, 5000, &done, &info)) == WU_PENDING) {
    }
    CHECK(info.error == rc && info.in_flight == 0, "the run left error %d, %d in flight", info.error, info.in_flight);
    if (t) wu_thread_join(t);
    wu_ring_info_get(r, &info);
    CHECK(rc == WU_ERR_CANCELLED && info.in_flight == 0, "stopped ring: rc %d, %d in flight", rc, info.in_flight);
    CHECK(info.bytes_done > 0 && info.bytes_done < TOTAL, "stopped ring moved %llu",
          (unsigned long long)info.bytes_done);
    CHECK(wu_ring_submit(r, NULL, 0, 0) == WU_ERR_CANCELLED, "a failed ring refuses submits");
    printf("ring: stopped after %llu bytes\n", (unsigned long long)info.bytes_done);
    check_received(d, data, (size_t)info.bytes_done, "stopped ring");
    wu_ring_free(r);
    wu_device_free(d);
}

int main(void)
{
    char err[512];
    uint8_t *data = malloc(TOTAL);
    uint32_t seed = 12345;
    int rc;
    if (!data) return 2;
    for (size_t i = 0; i < TOTAL; i++) {
        seed = seed * 1103515245u + 12345u;
        data[i] = (uint8_t)(seed >> 16);
    }
    printf("wdfusb shim %s\n", wu_shim_version());
    CHECK(wu_sizeof_check() == 0, "ABI assumptions");

    rc = wu_libusb_load("no-such-libusb-1.0.dll", err, sizeof err);
    printf("libusb: %s\n", err);
    CHECK(rc == WU_ERR_NO_LIBUSB && strstr(err, "no-such-libusb-1.0.dll"), "rc %d, message '%s'", rc, err);
    CHECK(!wu_libusb_loaded(), "nothing loaded");

    sync_writes_are_paced(data);
    async_completions_arrive_in_order(data);
    a_nak_ends_at_the_timeout(data);
    another_thread_cancels(data);
    completion_context_is_per_thread(data);
    ring_streams_and_stops_on_a_prefix(data);
    CHECK(wu_live_objects() == 0, "%d native objects left", wu_live_objects());

    free(data);
    printf("%s: %d failure(s)\n", failures ? "FAILED" : "ok", failures);
    return failures ? 1 : 0;
}
