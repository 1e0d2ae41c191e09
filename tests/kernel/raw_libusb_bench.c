/*
 * Raw C libusb reference benchmark for wdfusb (runs inside the kernel rig).
 *
 * Opens VID:PID (the one at --bus/--address when given), claims interface 0 and moves COUNT transfers of SIZE bytes on
 * endpoint EP: synchronously (libusb_bulk_transfer) or asynchronously with
 * DEPTH transfers in flight (libusb_submit_transfer). OUT data follows the
 * f_sourcesink pattern=1 "mod63" layout: byte j of each packet is j % 63, i.e.
 * buf[i] = (i % wMaxPacketSize) % 63, so the SourceSink gadget verifies it.
 * --bad-byte corrupts one byte of the first transfer; the gadget then halts its
 * OUT endpoint and a transfer fails with LIBUSB_ERROR_PIPE (exit status 3).
 *
 * Prints one JSON object: {size, count, seconds, MBps, us_per_transfer, ...}.
 * Build: gcc -O2 -o raw_libusb_bench raw_libusb_bench.c -I/usr/include/libusb-1.0 -lusb-1.0
 */
#include <libusb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct opts {
	int vid, pid, ep, size, count, depth, bad_byte, timeout_ms, iface, bus, address;
};

struct async_state {
	int submitted, completed, count, failed;
	int status;
	long bytes;
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: raw_libusb_bench [--vid 0x0525] [--pid 0xa4a0] [--ep 0x02] [--size N]\n"
		"       [--count N] [--async DEPTH] [--bad-byte] [--timeout MS] [--iface N]\n"
		"       [--bus N --address N]\n");
	exit(2);
}

static void parse(int argc, char **argv, struct opts *o)
{
	*o = (struct opts){0x0525, 0xa4a0, 0x02, 65536, 16, 0, 0, 5000, 0, 0, 0};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--bad-byte")) {
			o->bad_byte = 1;
			continue;
		}
		if (i + 1 >= argc)
			usage();
		long v = strtol(argv[++i], NULL, 0);
		if (!strcmp(a, "--vid")) o->vid = v;
		else if (!strcmp(a, "--pid")) o->pid = v;
		else if (!strcmp(a, "--ep")) o->ep = v;
		else if (!strcmp(a, "--size")) o->size = v;
		else if (!strcmp(a, "--count")) o->count = v;
		else if (!strcmp(a, "--async")) o->depth = v;
		else if (!strcmp(a, "--timeout")) o->timeout_ms = v;
		else if (!strcmp(a, "--iface")) o->iface = v;
		else if (!strcmp(a, "--bus")) o->bus = v;
		else if (!strcmp(a, "--address")) o->address = v;
		else usage();
	}
	if (o->size <= 0 || o->count <= 0 || o->depth < 0)
		usage();
}

static void LIBUSB_CALL on_done(struct libusb_transfer *t)
{
	struct async_state *st = t->user_data;
	st->completed++;
	if (t->status != LIBUSB_TRANSFER_COMPLETED) {
		if (!st->failed)
			st->status = t->status;
		st->failed++;
		return;
	}
	st->bytes += t->actual_length;
	if (!st->failed && st->submitted < st->count) {
		if (libusb_submit_transfer(t) == 0)
			st->submitted++;
		else
			st->failed++;
	}
}

static const char *xfer_status_name(int s)
{
	switch (s) {
	case LIBUSB_TRANSFER_STALL: return "LIBUSB_ERROR_PIPE";
	case LIBUSB_TRANSFER_TIMED_OUT: return "LIBUSB_ERROR_TIMEOUT";
	case LIBUSB_TRANSFER_NO_DEVICE: return "LIBUSB_ERROR_NO_DEVICE";
	case LIBUSB_TRANSFER_OVERFLOW: return "LIBUSB_ERROR_OVERFLOW";
	case LIBUSB_TRANSFER_CANCELLED: return "CANCELLED";
	default: return "LIBUSB_ERROR_IO";
	}
}

int main(int argc, char **argv)
{
	struct opts o;
	parse(argc, argv, &o);
	libusb_context *ctx = NULL;
	int rc = libusb_init(&ctx);
	if (rc) {
		fprintf(stderr, "libusb_init: %s\n", libusb_error_name(rc));
		return 1;
	}
	libusb_device_handle *h = NULL;
	if (!o.bus) {
		h = libusb_open_device_with_vid_pid(ctx, o.vid, o.pid);
	} else { /* the same VID:PID may be listed twice (a device and its USB/IP copy) */
		libusb_device **list;
		ssize_t n = libusb_get_device_list(ctx, &list);
		for (ssize_t i = 0; i < n && !h; i++) {
			struct libusb_device_descriptor d;
			if (libusb_get_bus_number(list[i]) != o.bus || libusb_get_device_address(list[i]) != o.address)
				continue;
			if (libusb_get_device_descriptor(list[i], &d) == 0 && d.idVendor == o.vid && d.idProduct == o.pid)
				libusb_open(list[i], &h);
		}
		if (n >= 0)
			libusb_free_device_list(list, 1);
	}
	if (!h) {
		fprintf(stderr, "device %04x:%04x not found/openable\n", o.vid, o.pid);
		return 1;
	}
	libusb_set_auto_detach_kernel_driver(h, 1);
	rc = libusb_claim_interface(h, o.iface);
	if (rc) {
		fprintf(stderr, "claim_interface: %s\n", libusb_error_name(rc));
		return 1;
	}
	unsigned char serial[128] = "";
	struct libusb_device_descriptor dd;
	if (libusb_get_device_descriptor(libusb_get_device(h), &dd) == 0 && dd.iSerialNumber)
		libusb_get_string_descriptor_ascii(h, dd.iSerialNumber, serial, sizeof(serial));
	for (unsigned char *c = serial; *c; c++)
		if (*c == '"' || *c == '\\' || *c < 0x20)
			*c = '?';
	int maxp = libusb_get_max_packet_size(libusb_get_device(h), o.ep);
	if (maxp <= 0) {
		fprintf(stderr, "endpoint 0x%02x not found: %s\n", o.ep, libusb_error_name(maxp));
		return 1;
	}
	int depth = o.depth ? o.depth : 1;
	unsigned char **bufs = calloc(depth, sizeof(*bufs));
	for (int d = 0; d < depth; d++) {
		bufs[d] = malloc(o.size);
		for (int i = 0; i < o.size; i++)
			bufs[d][i] = (unsigned char)((i % maxp) % 63);
	}
	if (o.bad_byte)
		bufs[0][o.size / 2] ^= 0xff;

	const char *err = NULL;
	long bytes = 0;
	int done = 0;
	double t0 = now();
	if (!o.depth) {
		for (; done < o.count; done++) {
			int got = 0;
			rc = libusb_bulk_transfer(h, o.ep, bufs[0], o.size, &got, o.timeout_ms);
			bytes += got;
			if (rc) {
				err = libusb_error_name(rc);
				break;
			}
			if (o.bad_byte && done == 0)
				bufs[0][o.size / 2] ^= 0xff; /* only the first transfer is bad */
		}
	} else {
		struct async_state st = {0, 0, o.count, 0, 0, 0};
		struct libusb_transfer **xs = calloc(depth, sizeof(*xs));
		for (int d = 0; d < depth && st.submitted < o.count; d++) {
			xs[d] = libusb_alloc_transfer(0);
			libusb_fill_bulk_transfer(xs[d], h, o.ep, bufs[d], o.size, on_done, &st,
						  o.timeout_ms);
			if (libusb_submit_transfer(xs[d]) == 0)
				st.submitted++;
		}
		while (st.completed < st.submitted)
			libusb_handle_events(ctx);
		done = st.completed - st.failed;
		bytes = st.bytes;
		if (st.failed)
			err = xfer_status_name(st.status);
		for (int d = 0; d < depth; d++)
			if (xs[d])
				libusb_free_transfer(xs[d]);
		free(xs);
	}
	double secs = now() - t0;
	printf("{\"size\": %d, \"count\": %d, \"done\": %d, \"bytes\": %ld, \"seconds\": %.6f, "
	       "\"MBps\": %.3f, \"us_per_transfer\": %.2f, \"mode\": \"%s\", \"depth\": %d, "
	       "\"ep\": %d, \"maxp\": %d, \"serial\": \"%s\", \"error\": %s%s%s}\n",
	       o.size, o.count, done, bytes, secs, secs > 0 ? bytes / secs / 1e6 : 0.0,
	       done ? secs * 1e6 / done : 0.0, o.depth ? "async" : "sync", depth, o.ep, maxp, serial,
	       err ? "\"" : "", err ? err : "null", err ? "\"" : "");
	libusb_release_interface(h, o.iface);
	libusb_close(h);
	libusb_exit(ctx);
	if (!err)
		return 0;
	return strcmp(err, "LIBUSB_ERROR_PIPE") == 0 ? 3 : 4;
}
