import Foundation
import Transport

/// `virtual:DIR`: the virtual ESP32 of a device state folder, run in this process. Bytes go
/// straight into its ``ProtocolEngine``; replies are available immediately, so a read that finds
/// nothing means the reply was lost (no waiting). State is written back to the folder on close,
/// as `espforge device serve` does. Optional faults (`?faults=SPEC&seed=N`) are injected exactly
/// as the server injects them.
///
/// `?lines=auto` wires the board's usual auto-reset circuit to the modem lines (DTR → IO0,
/// RTS → EN, both active low) and makes the port a serial one: an EN pulse with IO0 low resets
/// the chip into download mode (ROM banner), with IO0 high it boots from flash and runs the
/// `firmware` it was opened with (console output follows; nil: the chip prints nothing).
///
/// `?lines=usb-jtag` (ESP32-S3/C3) puts the modem lines on the chip's USB-Serial-JTAG peripheral
/// instead: RTS asserted with DTR released holds the chip in reset; if DTR was asserted just
/// before the reset began, the chip comes out of it in download mode, otherwise it boots from
/// flash. esptool's `usb-reset` sequence and its USB hard reset drive exactly these states.
/// Modelled from Espressif's documentation of the peripheral (no recording).
///
/// Lives here, not in Transport: Transport opens `virtual:` names through an injected opener
/// (``VirtualPorts/opener(firmware:)``) and does not depend on the device model.
public final class VirtualPort: ChipPort {
    public let name: String
    public let kind: PortKind
    private let directory: String
    private let lines: Bool
    private let usbSerialJTAG: Bool
    private var dtr = false, rts = false
    /// USB-Serial-JTAG: the chip is held in reset, and comes out in download mode.
    private var inUSBReset = false, usbDownloadLatched = false
    public let store: DeviceStore
    public let engine: ProtocolEngine
    private let faultPlan: FaultPlan?
    private let faultSeed: UInt64
    private var injector: FaultInjector?
    private var pending: [UInt8] = []
    private var open = false

    public init(name: String, directory: String, faults: String? = nil, seed: UInt64 = 1, resetLines: Bool = false,
                usbSerialJTAG: Bool = false, firmware: (@Sendable (inout Device) -> FirmwareRun)? = nil) throws {
        self.name = name
        self.directory = directory
        lines = resetLines || usbSerialJTAG
        self.usbSerialJTAG = usbSerialJTAG
        kind = resetLines || usbSerialJTAG ? .serial : .virtual
        store = DeviceStore(directory: directory)
        engine = ProtocolEngine(device: try store.load())
        // ESP32, ESP32-S3 and ESP32-C3 alike: an EN pulse with IO0 high runs the firmware.
        if lines { engine.firmware = firmware }
        faultPlan = try faults.map { try FaultPlan(spec: $0) }
        if let plan = faultPlan, !plan.stuckEFuseBits.isEmpty {
            guard engine.chip != nil else { throw DeviceError.badFaultSpec(plan.spec, "efuse-stuck applies to ESP32-S3/C3 devices only") }
            engine.stuckEFuseBits = plan.stuckEFuseBits
        }
        faultSeed = seed
        begin()
    }

    private func begin() {
        engine.beginConnection()
        injector = faultPlan.map { FaultInjector(plan: $0, seed: faultSeed &+ UInt64(engine.device.stats.connections)) }
        pending = []
        open = true
    }

    public func write(_ bytes: [UInt8]) throws {
        guard open else { throw TransportError.closed(name) }
        var input = bytes
        if var inj = injector {
            let r = inj.corrupt(input)
            injector = inj
            input = r.bytes
            if r.disconnect {
                _ = engine.receive(input)
                end()
                throw TransportError.closed(name)
            }
        }
        var out = engine.receive(input)
        if var inj = injector {
            if inj.shouldReset(commands: engine.connection.commands) {
                engine.resetToROM()
                out += romBootBanner
            }
            let stallMS = out.isEmpty ? 0 : inj.stall()
            if stallMS > 0 { engine.stall(seconds: Double(stallMS) / 1000) }
            let r = inj.corrupt(out)
            injector = inj
            pending += r.bytes
            if r.disconnect { end() }
            return
        }
        pending += out
    }

    public func read(timeout: Double) throws -> [UInt8] {
        if pending.isEmpty {
            guard open else { throw TransportError.closed(name) }
            return []
        }
        let out = pending
        pending = []
        return out
    }

    public func setBaud(_ baud: Int) throws {}
    public func setModemLines(dtr: Bool?, rts: Bool?) throws {
        guard lines else { return }
        if usbSerialJTAG { return usbLines(dtr: dtr, rts: rts) }
        let enWasLow = self.rts
        if let dtr { self.dtr = dtr }
        if let rts { self.rts = rts }
        guard open, enWasLow, !self.rts else { return }
        // EN rises: the chip comes out of reset and samples IO0.
        if self.dtr {
            engine.resetToROM()
            pending += engine.chip?.downloadBanner(reset: "0x1 (POWERON)") ?? romBootBanner
        } else {
            pending += engine.resetIntoFirmware()
            try? save()
        }
    }

    /// The USB-Serial-JTAG peripheral's reset logic (see the type's documentation).
    private func usbLines(dtr newDTR: Bool?, rts newRTS: Bool?) {
        let dtrBefore = dtr
        if let newDTR { dtr = newDTR }
        if let newRTS { rts = newRTS }
        guard open else { return }
        let reset = rts && !dtr
        if reset, !inUSBReset {
            inUSBReset = true
            usbDownloadLatched = dtrBefore
        } else if !reset, inUSBReset {
            inUSBReset = false
            if usbDownloadLatched {
                engine.resetToROM()
                pending += engine.chip?.downloadBanner(reset: "0x15 (USB_UART_CHIP_RESET)") ?? romBootBanner
            } else {
                pending += engine.resetIntoFirmware()
                try? save()
            }
        }
    }

    public func flushInput() { pending = [] }

    public func reopen() throws {
        if open { end() }
        begin()
    }

    private func end() {
        guard open else { return }
        open = false
        engine.endConnection()
        if let injector { engine.recordFaults(injector.counters, spec: faultPlan?.spec, seed: faultSeed) }
        try? save()
    }

    /// Writes changed flash sectors, eFuses and statistics to the state folder.
    public func save() throws {
        try store.saveFlashSectors(engine.device.flash, sectors: engine.takeDirtySectors())
        if engine.efusesDirty {
            try store.saveEFuses(of: engine.device)
            engine.efusesDirty = false
        }
        try store.saveStats(engine.stats)
    }

    public func close() {
        end()
        pending = []
    }

    deinit { close() }
}

/// Opening `virtual:DIR` ports in this process.
public enum VirtualPorts {
    /// What a `?lines=auto` port of a state folder runs when it boots from flash (nil: nothing).
    public typealias FirmwareFactory = @Sendable (_ stateFolder: String) -> (@Sendable (inout Device) -> FirmwareRun)?

    /// A port opener for serial, `socket://` and `virtual:DIR` names; `firmware` gives the
    /// firmware of each folder's `?lines=auto` port (e.g. BootSimulator's `VirtualFirmware.hook`).
    public static func opener(firmware: FirmwareFactory? = nil) -> PortOpener {
        PortOpener(virtual: { address in
            try VirtualPort(name: address.name, directory: address.directory, faults: address.faults, seed: address.seed,
                            resetLines: address.resetLines && !address.usbSerialJTAG, usbSerialJTAG: address.usbSerialJTAG,
                            firmware: address.resetLines ? firmware?(address.directory) : nil)
        })
    }
}
