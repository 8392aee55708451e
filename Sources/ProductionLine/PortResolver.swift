import EFuse
import ESPCore
import Flasher
import Transport
import VirtualDevice

/// Turns a `--port` value into register access to a chip.
///
/// `virtual:DIR` drives a virtual device state folder in-process (no server) and saves every eFuse
/// program cycle at once; serial ports and `socket://HOST:PORT` go through the flasher's loader
/// connection (ROM loader, no stub), whose client implements `RegisterAccess`.
public func openRegisterAccess(port: String, baud: Int?, before: ResetMode = .defaultReset) throws -> any RegisterAccess {
    if port.hasPrefix("virtual:") {
        let dir = String(port.dropFirst("virtual:".count))
        guard !dir.isEmpty else {
            throw UsageError("--port virtual: needs a state folder", hint: "e.g. --port virtual:dev1 (made with `espforge device create --state dev1`)")
        }
        return try VirtualRegisterAccess(directory: dir)
    }
    return try LoaderConnection.open(port: port, baud: baud ?? 115_200, before: before)
}

/// A virtual device folder opened in-process: register reads and writes go straight to the
/// device's protocol engine; every eFuse program cycle is saved back to `efuse.bin` at once.
public final class VirtualRegisterAccess: RegisterAccess, CrystalFrequencyReporting {
    public let store: DeviceStore
    public let engine: ProtocolEngine

    public init(directory: String) throws {
        store = DeviceStore(directory: directory)
        engine = ProtocolEngine(device: try store.load())
        engine.beginConnection()
        if engine.downloadModeDisabled {
            throw UsageError("the device in \(directory) does not answer: UART_DOWNLOAD_DIS is burned, so it never enters download mode",
                             hint: "its eFuses can no longer be read or burned over the serial loader")
        }
    }

    public var crystalHz: Int { engine.device.description.crystalHz }

    public func readRegister(_ address: UInt32) throws -> UInt32 { engine.readRegister(address) }

    public func writeRegister(_ address: UInt32, _ value: UInt32) throws {
        engine.writeRegister(address, value)
        if engine.efusesDirty {
            try store.saveEFuses(of: engine.device)
            engine.efusesDirty = false
        }
    }
}
