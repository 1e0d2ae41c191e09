/*
 * The part of libusb-1.0's stable ABI the shim uses, declared here so that no
 * libusb headers are needed to build. The library itself is loaded at run time
 * (backend_libusb.c). tests/test_libusb_abi.py checks these declarations against
 * the real library.
 */
#ifndef WU_LIBUSB_ABI_H
#define WU_LIBUSB_ABI_H

#include <stdint.h>
#include "platform.h"

typedef struct libusb_context libusb_context;
typedef struct libusb_device libusb_device;
typedef struct libusb_device_handle libusb_device_handle;

struct libusb_version {
    uint16_t major, minor, micro, nano;
    const char *rc;
    const char *describe;
};

struct libusb_device_descriptor {
    uint8_t bLength;
    uint8_t bDescriptorType;
    uint16_t bcdUSB;
    uint8_t bDeviceClass;
    uint8_t bDeviceSubClass;
    uint8_t bDeviceProtocol;
    uint8_t bMaxPacketSize0;
    uint16_t idVendor;
    uint16_t idProduct;
    uint16_t bcdDevice;
    uint8_t iManufacturer;
    uint8_t iProduct;
    uint8_t iSerialNumber;
    uint8_t bNumConfigurations;
};

struct libusb_transfer;
typedef void (WU_CALLBACK *libusb_transfer_cb_fn)(struct libusb_transfer *transfer);

struct libusb_iso_packet_descriptor {
    unsigned int length;
    unsigned int actual_length;
    int status;
};

struct libusb_transfer {
    libusb_device_handle *dev_handle;
    uint8_t flags;
    unsigned char endpoint;
    unsigned char type;
    unsigned int timeout;
    int status;
    int length;
    int actual_length;
    libusb_transfer_cb_fn callback;
    void *user_data;
    unsigned char *buffer;
    int num_iso_packets;
    struct libusb_iso_packet_descriptor iso_packet_desc[1];
};

enum {
    LIBUSB_TRANSFER_COMPLETED = 0, LIBUSB_TRANSFER_ERROR = 1, LIBUSB_TRANSFER_TIMED_OUT = 2,
    LIBUSB_TRANSFER_CANCELLED = 3, LIBUSB_TRANSFER_STALL = 4, LIBUSB_TRANSFER_NO_DEVICE = 5,
    LIBUSB_TRANSFER_OVERFLOW = 6
};
enum { LIBUSB_TRANSFER_ADD_ZERO_PACKET = 1 << 3 };
enum { LIBUSB_ERROR_NOT_FOUND = -5, LIBUSB_ERROR_INTERRUPTED = -10, LIBUSB_ERROR_NO_MEM = -11,
       LIBUSB_ERROR_NOT_SUPPORTED = -12 };

typedef int libusb_hotplug_callback_handle;
typedef int (WU_CALLBACK *libusb_hotplug_callback_fn)(libusb_context *ctx, libusb_device *device, int event,
                                                      void *user_data);
enum { LIBUSB_CAP_HAS_HOTPLUG = 0x0001 };
enum { LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED = 1, LIBUSB_HOTPLUG_EVENT_DEVICE_LEFT = 2, LIBUSB_HOTPLUG_MATCH_ANY = -1 };

/* Every function the shim calls, as a table of pointers filled at load time. */
#define WU_LIBUSB_FUNCTIONS(X)                                                                 \
    X(int, libusb_init, (libusb_context **ctx))                                                \
    X(void, libusb_exit, (libusb_context *ctx))                                                \
    X(const struct libusb_version *, libusb_get_version, (void))                               \
    X(long, libusb_get_device_list, (libusb_context *ctx, libusb_device ***list))              \
    X(void, libusb_free_device_list, (libusb_device **list, int unref))                        \
    X(uint8_t, libusb_get_bus_number, (libusb_device *dev))                                    \
    X(uint8_t, libusb_get_device_address, (libusb_device *dev))                                \
    X(int, libusb_get_device_speed, (libusb_device *dev))                                      \
    X(int, libusb_get_port_numbers, (libusb_device *dev, uint8_t *ports, int len))             \
    X(int, libusb_get_device_descriptor, (libusb_device *dev, struct libusb_device_descriptor *d)) \
    X(int, libusb_open, (libusb_device *dev, libusb_device_handle **handle))                   \
    X(void, libusb_close, (libusb_device_handle *handle))                                      \
    X(libusb_device *, libusb_get_device, (libusb_device_handle *handle))                      \
    X(int, libusb_get_max_packet_size, (libusb_device *dev, unsigned char endpoint))           \
    X(int, libusb_set_auto_detach_kernel_driver, (libusb_device_handle *h, int enable))        \
    X(int, libusb_get_configuration, (libusb_device_handle *h, int *config))                   \
    X(int, libusb_set_configuration, (libusb_device_handle *h, int config))                    \
    X(int, libusb_claim_interface, (libusb_device_handle *h, int iface))                       \
    X(int, libusb_release_interface, (libusb_device_handle *h, int iface))                     \
    X(int, libusb_set_interface_alt_setting, (libusb_device_handle *h, int iface, int alt))    \
    X(int, libusb_clear_halt, (libusb_device_handle *h, unsigned char ep))                     \
    X(int, libusb_reset_device, (libusb_device_handle *h))                                     \
    X(int, libusb_kernel_driver_active, (libusb_device_handle *h, int iface))                  \
    X(int, libusb_detach_kernel_driver, (libusb_device_handle *h, int iface))                  \
    X(int, libusb_attach_kernel_driver, (libusb_device_handle *h, int iface))                  \
    X(int, libusb_control_transfer, (libusb_device_handle *h, uint8_t type, uint8_t req,       \
                                     uint16_t value, uint16_t index, unsigned char *data,      \
                                     uint16_t len, unsigned int timeout))                      \
    X(struct libusb_transfer *, libusb_alloc_transfer, (int iso_packets))                      \
    X(void, libusb_free_transfer, (struct libusb_transfer *t))                                 \
    X(int, libusb_submit_transfer, (struct libusb_transfer *t))                                \
    X(int, libusb_cancel_transfer, (struct libusb_transfer *t))                                \
    X(int, libusb_has_capability, (uint32_t capability))                                       \
    X(int, libusb_hotplug_register_callback, (libusb_context *ctx, int events, int flags,      \
                                              int vendor_id, int product_id, int dev_class,    \
                                              libusb_hotplug_callback_fn cb, void *user_data,  \
                                              libusb_hotplug_callback_handle *handle))         \
    X(int, libusb_handle_events_timeout_completed, (libusb_context *ctx, struct timeval *tv,   \
                                                    int *completed))                           \
    X(void, libusb_interrupt_event_handler, (libusb_context *ctx)) /* libusb 1.0.21 */

#endif
