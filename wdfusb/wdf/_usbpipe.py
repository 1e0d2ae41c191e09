"""WDFUSBPIPE: the pipe object and its information calls.

The transfer calls (WdfUsbTargetPipeWrite/ReadSynchronously, Reset, Abort) are in
:mod:`wdfusb.wdf._transfer`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._core import CorePipe
from .._engine import Transfer
from ._handles import WDFOBJECT, FxObject, get_object, required
from ._request import FxIoTarget
from ._structs import USB_TYPE_TO_PIPE_TYPE, WDF_USB_PIPE_INFORMATION, WdfUsbPipeTypeInvalid

if TYPE_CHECKING:
    from ._usbdevice import FxUsbDevice, FxUsbInterface


class FxUsbPipe(FxIoTarget):
    """A WDFUSBPIPE (also a WDFIOTARGET): one configured endpoint of an interface."""

    HANDLE_TYPE = "WDFUSBPIPE"
    NO_DELETE_DDI = True
    continuous_reader: Any = None  # its readers, once WdfUsbTargetPipeConfigContinuousReader made them

    def __init__(self, interface: FxUsbInterface, core: CorePipe, attributes: Any = None) -> None:
        super().__init__(interface, attributes)
        self.interface = interface
        self.device: FxUsbDevice = interface.device
        self.core = core
        self.check_packet_size = True
        # fixed for the pipe's life (its CorePipe never changes); plain attributes, read on every transfer
        self.pipe_type: int = USB_TYPE_TO_PIPE_TYPE.get(core.type, WdfUsbPipeTypeInvalid)
        self.is_in: bool = bool(core.address & 0x80)

    @property
    def stack_size(self) -> int:
        return self.device.stack_size

    def _before_delete(self) -> None:
        """The pipe goes (with its device): its continuous readers are cancelled and back first,
        as the framework purges the target before removing it."""
        if self.continuous_reader is not None:
            self.continuous_reader.stop()
        super()._before_delete()

    @property
    def target_closed(self) -> bool:
        return self.core.device.closed

    def new_transfer(self) -> Transfer:
        return self.core.new_transfer()

    def device_key(self) -> object:
        return self.core.device

    def fill_information(self, info: WDF_USB_PIPE_INFORMATION) -> None:
        """FxUsbPipe::GetInformation: field by field (Size is left alone)."""
        info.MaximumPacketSize = self.core.max_packet
        info.EndpointAddress = self.core.address
        info.Interval = self.core.interval
        info.PipeType = self.pipe_type
        info.MaximumTransferSize = self.core.maximum_transfer_size
        info.SettingIndex = self.interface.setting_index


class WDFUSBPIPE(WDFOBJECT):
    """Handle box for a WDFUSBPIPE."""

    _OBJECT = FxUsbPipe


def WdfUsbTargetPipeGetInformation(Pipe: Any, PipeInformation: WDF_USB_PIPE_INFORMATION) -> None:
    """WdfUsbTargetPipeGetInformation: MaximumPacketSize, EndpointAddress, Interval, SettingIndex, PipeType,
    MaximumTransferSize (no Size check, as in WDF)."""
    pipe = get_object(Pipe, FxUsbPipe)
    required(PipeInformation, "PipeInformation")
    pipe.fill_information(PipeInformation)


def WdfUsbTargetPipeGetType(Pipe: Any) -> int:
    """WdfUsbTargetPipeGetType: a WDF_USB_PIPE_TYPE (WdfUsbPipeTypeBulk is 3: USB's type + 1)."""
    return get_object(Pipe, FxUsbPipe).pipe_type


def WdfUsbTargetPipeIsInEndpoint(Pipe: Any) -> bool:
    """WdfUsbTargetPipeIsInEndpoint."""
    return get_object(Pipe, FxUsbPipe).is_in


def WdfUsbTargetPipeIsOutEndpoint(Pipe: Any) -> bool:
    """WdfUsbTargetPipeIsOutEndpoint."""
    return not get_object(Pipe, FxUsbPipe).is_in


def WdfUsbTargetPipeSetNoMaximumPacketSizeCheck(Pipe: Any) -> None:
    """WdfUsbTargetPipeSetNoMaximumPacketSizeCheck: allow reads whose length is not a multiple of
    MaximumPacketSize (otherwise STATUS_INVALID_BUFFER_SIZE)."""
    get_object(Pipe, FxUsbPipe).check_packet_size = False


def WdfUsbTargetPipeGetIoTarget(Pipe: Any) -> FxObject:
    """WdfUsbTargetPipeGetIoTarget: the pipe's WDFIOTARGET (in WDF, the pipe object itself)."""
    return get_object(Pipe, FxUsbPipe)
