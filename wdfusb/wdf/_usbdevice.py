"""WDFUSBDEVICE and WDFUSBINTERFACE: from a device to its configured pipes."""

from __future__ import annotations

from typing import Any

from .._core import CoreDevice
from .._descriptors import InterfaceInfo
from .._engine import SPEEDS, WU_ERR_NO_DEVICE, WU_ERR_PIPE, Transfer
from .._status import outcome
from ._context import at_passive_level
from ._handles import (
    WDF_INVALID_HANDLE,
    WDFOBJECT,
    FxObject,
    WdfBugCheck,
    get_object,
    integer,
    require_integer,
    required,
    store,
    validate_attributes,
)
from ._ntstatus import (
    NT_SUCCESS,
    NTSTATUS,
    STATUS_DEVICE_DOES_NOT_EXIST,
    STATUS_INFO_LENGTH_MISMATCH,
    STATUS_INSUFFICIENT_RESOURCES,
    STATUS_INVALID_DEVICE_REQUEST,
    STATUS_INVALID_PARAMETER,
    STATUS_NOT_SUPPORTED,
    STATUS_SUCCESS,
)
from ._request import FxIoTarget
from ._structs import (
    USB_DEVICE_DESCRIPTOR,
    WDF_USB_DEVICE_SELECT_CONFIG_PARAMS,
    WDF_USB_PIPE_INFORMATION,
    WdfUsbTargetDeviceSelectConfigTypeDeconfig,
    WdfUsbTargetDeviceSelectConfigTypeInterfacesPairs,
    WdfUsbTargetDeviceSelectConfigTypeMultiInterface,
    WdfUsbTargetDeviceSelectConfigTypeSingleInterface,
    WdfUsbTargetDeviceSelectConfigTypeUrb,
)
from ._usbpipe import FxUsbPipe


class FxUsbDevice(FxIoTarget):
    """A WDFUSBDEVICE (also a WDFIOTARGET): an open device, its interfaces and pipes.

    Deleting it deletes its interfaces and pipes (and anything parented to it) and
    closes the device: transfers in flight are cancelled and drained first.
    """

    HANDLE_TYPE = "WDFUSBDEVICE"

    def __init__(self, core: CoreDevice, parent: FxObject | None, attributes: Any) -> None:
        super().__init__(parent, attributes)
        self.core = core
        self.interfaces = [FxUsbInterface(self, info) for info in core.config.interfaces]
        self.contract_version = USBD_CLIENT_CONTRACT_VERSION_INVALID  # WdfUsbTargetDeviceCreateWithParameters

    @property
    def stack_size(self) -> int:
        return int(getattr(self.core, "stack_size", 1))

    @property
    def target_closed(self) -> bool:
        return self.core.closed

    def new_transfer(self) -> Transfer:
        return self.core.new_transfer()

    def device_key(self) -> object:
        return self.core

    def _dispose(self) -> None:
        self.core.close()


class WDFUSBDEVICE(WDFOBJECT):
    """Handle box for a WDFUSBDEVICE."""

    _OBJECT = FxUsbDevice


class FxUsbInterface(FxObject):
    """A WDFUSBINTERFACE: one interface of the device and its configured setting's pipes."""

    HANDLE_TYPE = "WDFUSBINTERFACE"
    NO_DELETE_DDI = True

    def __init__(self, device: FxUsbDevice, info: InterfaceInfo) -> None:
        super().__init__(device, None)
        self.device = device
        self.info = info
        self.setting_index = 0
        self.pipes: list[FxUsbPipe] = []

    @property
    def number(self) -> int:
        return self.info.number

    def configure(self, setting_index: int, pipe_attributes: Any) -> None:
        """(Re)create the pipe objects for the configured setting."""
        for old in self.pipes:
            old.delete(force=True)
        self.setting_index = setting_index
        self.pipes = [FxUsbPipe(self, core, pipe_attributes) for core in self.device.core.pipes(self.number)]


class WDFUSBINTERFACE(WDFOBJECT):
    """Handle box for a WDFUSBINTERFACE."""

    _OBJECT = FxUsbInterface


USBD_CLIENT_CONTRACT_VERSION_INVALID = 0xFFFFFFFF  # what WdfUsbTargetDeviceCreate passes on
USBD_CLIENT_CONTRACT_VERSION_602 = 0x00000602  # Windows 8's USB driver stack contract


class WDF_USB_DEVICE_CREATE_CONFIG:
    """WDF_USB_DEVICE_CREATE_CONFIG (sizeof 8): Size, USBDClientContractVersion."""

    SIZEOF = 8

    def __init__(self) -> None:
        self.Size = 0
        self.USBDClientContractVersion = 0


def WDF_USB_DEVICE_CREATE_CONFIG_INIT(Config: WDF_USB_DEVICE_CREATE_CONFIG, USBDClientContractVersion: int) -> None:
    """WDF_USB_DEVICE_CREATE_CONFIG_INIT: zero it, set Size and the contract version."""
    Config.__init__()  # type: ignore[misc]
    Config.Size = WDF_USB_DEVICE_CREATE_CONFIG.SIZEOF
    Config.USBDClientContractVersion = USBDClientContractVersion


def WdfUsbTargetDeviceCreate(Device: Any, Attributes: Any, UsbDevice: WDFUSBDEVICE) -> NTSTATUS:
    """WdfUsbTargetDeviceCreate: open a device as a WDFUSBDEVICE.

    ``Device`` stands where WDF has the WDFDEVICE: a ``wdfusb.VirtualDevice`` or what
    ``wdfusb.find_device`` returns. Open failures come back as the engine's NTSTATUS
    (e.g. STATUS_ACCESS_DENIED, STATUS_DEVICE_NOT_CONNECTED).
    """
    _check_device(Device)
    return _create(Device, Attributes, UsbDevice, USBD_CLIENT_CONTRACT_VERSION_INVALID)


def WdfUsbTargetDeviceCreateWithParameters(
    Device: Any, Config: WDF_USB_DEVICE_CREATE_CONFIG, Attributes: Any, UsbDevice: WDFUSBDEVICE
) -> NTSTATUS:
    """WdfUsbTargetDeviceCreateWithParameters: WdfUsbTargetDeviceCreate with the client contract
    version the driver was written for (``USBD_CLIENT_CONTRACT_VERSION_602``, kept in the device's
    ``contract_version``; libusb has one contract, so it changes nothing else). ``Config`` None is
    a WdfBugCheck, a ``Size`` other than the struct's STATUS_INFO_LENGTH_MISMATCH, as in WDF."""
    _check_device(Device)
    required(Config, "Config")
    if integer(getattr(Config, "Size", None)) != WDF_USB_DEVICE_CREATE_CONFIG.SIZEOF:
        return STATUS_INFO_LENGTH_MISMATCH
    version = integer(getattr(Config, "USBDClientContractVersion", None))
    if version is None or not 0 <= version <= 0xFFFFFFFF:  # a ULONG
        return STATUS_INVALID_PARAMETER
    return _create(Device, Attributes, UsbDevice, version)


def _check_device(Device: Any) -> None:
    if Device is None or not hasattr(Device, "_open_native"):
        raise WdfBugCheck(
            f"{Device!r} is not a device (VirtualDevice or find_device result)", WDF_INVALID_HANDLE, Device, "WDFDEVICE"
        )


def _create(Device: Any, Attributes: Any, UsbDevice: WDFUSBDEVICE, contract_version: int) -> NTSTATUS:
    required(UsbDevice, "UsbDevice")
    UsbDevice.value = None
    status, parent = validate_attributes(Attributes)
    if not NT_SUCCESS(status):
        return status
    if not at_passive_level():
        return STATUS_INVALID_DEVICE_REQUEST
    try:
        code, core = CoreDevice.open(Device)
    except MemoryError:
        return STATUS_INSUFFICIENT_RESOURCES
    if core is None:
        return outcome(code).status
    device = FxUsbDevice(core, parent, Attributes)
    device.contract_version = contract_version
    store(UsbDevice, "UsbDevice", device, WDFUSBDEVICE)
    return STATUS_SUCCESS


def WdfUsbTargetDeviceSelectConfig(
    UsbDevice: Any, PipeAttributes: Any, Params: WDF_USB_DEVICE_SELECT_CONFIG_PARAMS
) -> NTSTATUS:
    """WdfUsbTargetDeviceSelectConfig: single interface, multiple interfaces (all at setting 0) or
    interface/setting pairs. Deconfig, URB and descriptor selection return STATUS_NOT_SUPPORTED, as in UMDF.
    """
    dev = get_object(UsbDevice, FxUsbDevice)
    required(Params, "Params")
    if not at_passive_level():
        return STATUS_INVALID_DEVICE_REQUEST
    if integer(Params.Size) != WDF_USB_DEVICE_SELECT_CONFIG_PARAMS.SIZEOF:
        return STATUS_INFO_LENGTH_MISMATCH
    kind = integer(Params.Type)
    if kind is None or not WdfUsbTargetDeviceSelectConfigTypeDeconfig <= kind <= WdfUsbTargetDeviceSelectConfigTypeUrb:
        return STATUS_INVALID_PARAMETER
    if kind not in (
        WdfUsbTargetDeviceSelectConfigTypeSingleInterface,
        WdfUsbTargetDeviceSelectConfigTypeMultiInterface,
        WdfUsbTargetDeviceSelectConfigTypeInterfacesPairs,
    ):
        return STATUS_NOT_SUPPORTED
    if PipeAttributes is not None:
        status, _parent = validate_attributes(PipeAttributes)
        if not NT_SUCCESS(status):
            return status
    if not dev.interfaces:
        return STATUS_SUCCESS
    choice: dict[FxUsbInterface, int] = {}
    if kind == WdfUsbTargetDeviceSelectConfigTypeSingleInterface:
        if len(dev.interfaces) > 1:
            return STATUS_INVALID_PARAMETER
        choice[dev.interfaces[0]] = 0
    elif kind == WdfUsbTargetDeviceSelectConfigTypeMultiInterface:
        choice = {iface: 0 for iface in dev.interfaces}
    else:
        multi = Params.Types.MultiInterface
        if multi.Pairs is None:
            return STATUS_INVALID_PARAMETER
        number = integer(multi.NumberInterfaces)
        if number is None or number != len(dev.interfaces) or len(multi.Pairs) < number:
            return STATUS_INVALID_PARAMETER
        for pair in multi.Pairs[:number]:
            iface = get_object(pair.UsbInterface, FxUsbInterface)
            index = integer(pair.SettingIndex)
            if iface.device is not dev or index is None or not 0 <= index < len(iface.info.settings):
                return STATUS_INVALID_PARAMETER
            choice[iface] = index
    settings = {iface.number: iface.info.settings[index].alternate for iface, index in choice.items()}
    code = dev.core.select_configuration(settings)
    if code != 0:
        return outcome(code).status
    for iface, index in choice.items():
        iface.configure(index, PipeAttributes)
    if kind == WdfUsbTargetDeviceSelectConfigTypeSingleInterface:
        iface = dev.interfaces[0]
        Params.Types.SingleInterface.ConfiguredUsbInterface = iface
        Params.Types.SingleInterface.NumberConfiguredPipes = len(iface.pipes)
    else:
        Params.Types.MultiInterface.NumberOfConfiguredInterfaces = len(choice)
    return STATUS_SUCCESS


def WdfUsbTargetDeviceGetNumInterfaces(UsbDevice: Any) -> int:
    """WdfUsbTargetDeviceGetNumInterfaces."""
    return len(get_object(UsbDevice, FxUsbDevice).interfaces)


def WdfUsbTargetDeviceGetInterface(UsbDevice: Any, InterfaceIndex: int) -> FxUsbInterface | None:
    """WdfUsbTargetDeviceGetInterface: the interface at an index (None if out of range)."""
    dev = get_object(UsbDevice, FxUsbDevice)
    index = require_integer(InterfaceIndex, "InterfaceIndex")
    if 0 <= index < len(dev.interfaces):
        return dev.interfaces[index]
    return None


def WdfUsbTargetDeviceGetDeviceDescriptor(UsbDevice: Any, UsbDeviceDescriptor: USB_DEVICE_DESCRIPTOR) -> None:
    """WdfUsbTargetDeviceGetDeviceDescriptor: fill a USB_DEVICE_DESCRIPTOR."""
    dev = get_object(UsbDevice, FxUsbDevice)
    required(UsbDeviceDescriptor, "UsbDeviceDescriptor")
    UsbDeviceDescriptor._fill(dev.core.device_descriptor)


def WdfUsbInterfaceGetInterfaceNumber(UsbInterface: Any) -> int:
    """WdfUsbInterfaceGetInterfaceNumber: bInterfaceNumber."""
    return get_object(UsbInterface, FxUsbInterface).number


def WdfUsbInterfaceGetNumSettings(UsbInterface: Any) -> int:
    """WdfUsbInterfaceGetNumSettings: the interface's alternate settings."""
    return len(get_object(UsbInterface, FxUsbInterface).info.settings)


def WdfUsbInterfaceGetNumEndpoints(UsbInterface: Any, SettingIndex: int) -> int:
    """WdfUsbInterfaceGetNumEndpoints: endpoints of a setting (0 for a bad index)."""
    iface = get_object(UsbInterface, FxUsbInterface)
    index = require_integer(SettingIndex, "SettingIndex")
    if 0 <= index < len(iface.info.settings):
        return len(iface.info.settings[index].endpoints)
    return 0


def WdfUsbInterfaceGetConfiguredSettingIndex(UsbInterface: Any) -> int:
    """WdfUsbInterfaceGetConfiguredSettingIndex."""
    return get_object(UsbInterface, FxUsbInterface).setting_index


def WdfUsbInterfaceGetNumConfiguredPipes(UsbInterface: Any) -> int:
    """WdfUsbInterfaceGetNumConfiguredPipes: 0 until the configuration is selected."""
    return len(get_object(UsbInterface, FxUsbInterface).pipes)


def WdfUsbInterfaceGetConfiguredPipe(
    UsbInterface: Any, PipeIndex: int, PipeInfo: WDF_USB_PIPE_INFORMATION | None = None
) -> FxUsbPipe | None:
    """WdfUsbInterfaceGetConfiguredPipe: the pipe at an index, filling ``PipeInfo`` if given.

    Returns None (and leaves PipeInfo alone) for an index out of range or a PipeInfo whose
    Size is not 20 (WDF_USB_PIPE_INFORMATION_INIT sets it).
    """
    iface = get_object(UsbInterface, FxUsbInterface)
    index = require_integer(PipeIndex, "PipeIndex")
    if PipeInfo is not None and integer(PipeInfo.Size) != WDF_USB_PIPE_INFORMATION.SIZEOF:
        return None
    if not 0 <= index < len(iface.pipes):
        return None
    pipe = iface.pipes[index]
    if PipeInfo is not None:
        pipe.fill_information(PipeInfo)
    return pipe


def WdfUsbTargetDeviceGetIoTarget(UsbDevice: Any) -> FxUsbDevice:
    """WdfUsbTargetDeviceGetIoTarget: the device's WDFIOTARGET (in WDF, the device object itself),
    the target of requests for its default control pipe."""
    return get_object(UsbDevice, FxUsbDevice)


WDF_USB_DEVICE_TRAIT_SELF_POWERED = 0x00000001
WDF_USB_DEVICE_TRAIT_REMOTE_WAKE_CAPABLE = 0x00000002
WDF_USB_DEVICE_TRAIT_AT_HIGH_SPEED = 0x00000004


class USBD_VERSION_INFORMATION:
    """USBD_VERSION_INFORMATION: USBDI_Version, Supported_USB_Version (the device's bcdUSB)."""

    def __init__(self) -> None:
        self.USBDI_Version = 0
        self.Supported_USB_Version = 0


class WDF_USB_DEVICE_INFORMATION:
    """WDF_USB_DEVICE_INFORMATION (sizeof 20): Size, UsbdVersionInformation, HcdPortCapabilities, Traits."""

    SIZEOF = 20

    def __init__(self) -> None:
        self.Size = 0
        self.UsbdVersionInformation = USBD_VERSION_INFORMATION()
        self.HcdPortCapabilities = 0
        self.Traits = 0


def WDF_USB_DEVICE_INFORMATION_INIT(Udi: WDF_USB_DEVICE_INFORMATION) -> None:
    """WDF_USB_DEVICE_INFORMATION_INIT: zero it and set Size."""
    Udi.__init__()  # type: ignore[misc]
    Udi.Size = WDF_USB_DEVICE_INFORMATION.SIZEOF


USBDI_VERSION = 0x600  # the USB driver stack interface version a Windows 8+ host reports


def WdfUsbTargetDeviceRetrieveInformation(UsbDevice: Any, Information: WDF_USB_DEVICE_INFORMATION) -> NTSTATUS:
    """WdfUsbTargetDeviceRetrieveInformation: the USB version and the traits (self powered and
    remote wake-up from the configuration's bmAttributes; at high speed: high speed or faster)."""
    device = get_object(UsbDevice, FxUsbDevice)
    required(Information, "Information")
    if not isinstance(Information, WDF_USB_DEVICE_INFORMATION) or integer(Information.Size) != (
        WDF_USB_DEVICE_INFORMATION.SIZEOF
    ):
        return STATUS_INFO_LENGTH_MISMATCH
    core = device.core
    attributes = core.config.attributes
    traits = (WDF_USB_DEVICE_TRAIT_SELF_POWERED if attributes & 0x40 else 0) | (
        WDF_USB_DEVICE_TRAIT_REMOTE_WAKE_CAPABLE if attributes & 0x20 else 0
    )
    if core.speed >= SPEEDS["high"]:
        traits |= WDF_USB_DEVICE_TRAIT_AT_HIGH_SPEED
    Information.UsbdVersionInformation.USBDI_Version = USBDI_VERSION
    Information.UsbdVersionInformation.Supported_USB_Version = int.from_bytes(core.device_descriptor[2:4], "little")
    Information.HcdPortCapabilities = 0
    Information.Traits = traits
    return STATUS_SUCCESS


def WdfUsbTargetDeviceResetPortSynchronously(UsbDevice: Any) -> NTSTATUS:
    """WdfUsbTargetDeviceResetPortSynchronously: reset the device's port and wait. I/O still in
    flight on the device is cancelled first (WDF drivers stop their pipes before, as kmdf_fx2's
    ResetDevice does); halts and data toggles are cleared, the configuration stays."""
    device = get_object(UsbDevice, FxUsbDevice)
    if not at_passive_level():
        return STATUS_INVALID_DEVICE_REQUEST
    return outcome(device.core.reset_port()).status


def WdfUsbTargetDeviceCyclePortSynchronously(UsbDevice: Any) -> NTSTATUS:
    """WdfUsbTargetDeviceCyclePortSynchronously: an unplug and replug through the device's port.
    I/O still in flight on the device is cancelled first (FxUsbDevice::CyclePort's
    CancelSentIo); the device then re-enumerates, and this WDFUSBDEVICE's I/O fails with the
    device-gone status from here on (KMDF: "don't do any more operations after this point"):
    a driver creates its USB target again (``WdfUsbTargetDeviceCreate``) once the device is back
    (``wdfusb.wait_for``). On libusb the port's power is switched where the operating system lets
    a program do it (Linux: sysfs, root or a udev rule): STATUS_ACCESS_DENIED without the
    permission, STATUS_NOT_SUPPORTED elsewhere; a virtual device re-enumerates."""
    device = get_object(UsbDevice, FxUsbDevice)
    if not at_passive_level():
        return STATUS_INVALID_DEVICE_REQUEST
    return outcome(device.core.cycle_port()).status


def connection_status(core: CoreDevice) -> NTSTATUS:
    """Whether a device is attached, as KMDF's FxUsbDevice::IsConnected answers it from the port
    status: STATUS_SUCCESS while it answers (a stall is an answer), STATUS_DEVICE_DOES_NOT_EXIST
    once it is gone, else the status of what failed."""
    code = core.connected()
    if code == WU_ERR_NO_DEVICE:
        return STATUS_DEVICE_DOES_NOT_EXIST
    return STATUS_SUCCESS if code == WU_ERR_PIPE else outcome(code).status


def WdfUsbTargetDeviceIsConnectedSynchronous(UsbDevice: Any) -> NTSTATUS:
    """WdfUsbTargetDeviceIsConnectedSynchronous: STATUS_SUCCESS while the device is attached
    (it answers a GET_STATUS), STATUS_DEVICE_DOES_NOT_EXIST once it is gone."""
    device = get_object(UsbDevice, FxUsbDevice)
    if not at_passive_level():
        return STATUS_INVALID_DEVICE_REQUEST
    return connection_status(device.core)


# WDF_USB_INTERFACE_SELECT_SETTING_PARAMS.Type (WdfUsbTargetDeviceSelectSettingType)
WdfUsbInterfaceSelectSettingTypeDescriptor = 0x10
WdfUsbInterfaceSelectSettingTypeSetting = 0x11
WdfUsbInterfaceSelectSettingTypeUrb = 0x12


class _SettingDescriptor:
    def __init__(self) -> None:
        self.InterfaceDescriptor: Any = None  # bytes of a USB_INTERFACE_DESCRIPTOR (bAlternateSetting at 3)


class _SettingInterface:
    def __init__(self) -> None:
        self.SettingIndex = 0


class _SettingUrb:
    def __init__(self) -> None:
        self.Urb: Any = None


class _SettingTypes:
    def __init__(self) -> None:
        self.Descriptor = _SettingDescriptor()
        self.Interface = _SettingInterface()
        self.Urb = _SettingUrb()


class WDF_USB_INTERFACE_SELECT_SETTING_PARAMS:
    """WDF_USB_INTERFACE_SELECT_SETTING_PARAMS (sizeof 16): Size, Type, Types.Descriptor /
    Types.Interface.SettingIndex / Types.Urb."""

    SIZEOF = 16

    def __init__(self) -> None:
        self.Size = 0
        self.Type = 0
        self.Types = _SettingTypes()


def WDF_USB_INTERFACE_SELECT_SETTING_PARAMS_INIT_SETTING(
    Params: WDF_USB_INTERFACE_SELECT_SETTING_PARAMS, SettingIndex: int
) -> None:
    """WDF_USB_INTERFACE_SELECT_SETTING_PARAMS_INIT_SETTING: select by setting index."""
    Params.__init__()  # type: ignore[misc]
    Params.Size = WDF_USB_INTERFACE_SELECT_SETTING_PARAMS.SIZEOF
    Params.Type = WdfUsbInterfaceSelectSettingTypeSetting
    Params.Types.Interface.SettingIndex = require_integer(SettingIndex, "SettingIndex")


def WDF_USB_INTERFACE_SELECT_SETTING_PARAMS_INIT_DESCRIPTOR(
    Params: WDF_USB_INTERFACE_SELECT_SETTING_PARAMS, Interface: Any
) -> None:
    """WDF_USB_INTERFACE_SELECT_SETTING_PARAMS_INIT_DESCRIPTOR: select by interface descriptor."""
    Params.__init__()  # type: ignore[misc]
    Params.Size = WDF_USB_INTERFACE_SELECT_SETTING_PARAMS.SIZEOF
    Params.Type = WdfUsbInterfaceSelectSettingTypeDescriptor
    Params.Types.Descriptor.InterfaceDescriptor = Interface


def WdfUsbInterfaceSelectSetting(
    UsbInterface: Any, PipesAttributes: Any, Params: WDF_USB_INTERFACE_SELECT_SETTING_PARAMS
) -> NTSTATUS:
    """WdfUsbInterfaceSelectSetting: select an alternate setting of the interface. Its old pipes
    are deleted (their handles bug-check after this) and the new setting's are created."""
    iface = get_object(UsbInterface, FxUsbInterface)
    required(Params, "Params")
    if not at_passive_level():
        return STATUS_INVALID_DEVICE_REQUEST
    if not isinstance(Params, WDF_USB_INTERFACE_SELECT_SETTING_PARAMS) or (
        integer(Params.Size) != WDF_USB_INTERFACE_SELECT_SETTING_PARAMS.SIZEOF
    ):
        return STATUS_INFO_LENGTH_MISMATCH
    status, _ = validate_attributes(PipesAttributes)
    if not NT_SUCCESS(status):
        return status
    settings = iface.info.settings
    if Params.Type == WdfUsbInterfaceSelectSettingTypeSetting:
        index = integer(Params.Types.Interface.SettingIndex)
    elif Params.Type == WdfUsbInterfaceSelectSettingTypeDescriptor:
        blob = Params.Types.Descriptor.InterfaceDescriptor
        if blob is None or len(bytes(blob)) < 9:
            return STATUS_INVALID_PARAMETER
        alt = bytes(blob)[3]
        index = next((i for i, s in enumerate(settings) if s.alternate == alt), None)
    elif Params.Type == WdfUsbInterfaceSelectSettingTypeUrb:
        return STATUS_NOT_SUPPORTED  # wdfusb builds no URBs
    else:
        return STATUS_INVALID_PARAMETER
    if index is None or not 0 <= index < len(settings):
        return STATUS_INVALID_PARAMETER
    code = iface.device.core.select_setting(iface.number, settings[index].alternate)
    if code != 0:
        return outcome(code).status
    iface.configure(index, PipesAttributes)
    return STATUS_SUCCESS
