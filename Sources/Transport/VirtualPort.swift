import Foundation
import VirtualDevice

/// `virtual:DIR`: the virtual ESP32 of a device state folder, run in this process. Bytes go
/// straight into its ``ProtocolEngine``; replies are available immediately, so a read that finds
/// nothing means the reply was lost (no waiting). State is written back to the folder on close,
/// as `espforge device serve` does. Optional faults (`?faults=SPEC&seed=N`) are injected exactly
/// as the server injects them.
public final class VirtualPort: ChipPort {
    public let name: String
    public let kind = PortKind.virtual
    public let store: DeviceStore
    public let engine: ProtocolEngine
    private let faultPlan: FaultPlan?
    private let faultSeed: UInt64
    private var injector: FaultInjector?
    private var pending: [UInt8] = []
    private var open = false

    public init(name: String, directory: String, faults: String? = nil, seed: UInt64 = 1) throws {
        self.name = name
        store = DeviceStore(directory: directory)
        engine = ProtocolEngine(device: try store.load())
        faultPlan = try faults.map { try FaultPlan(spec: $0) }
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
    public func setModemLines(dtr: Bool?, rts: Bool?) throws {}
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
            try store.saveEFuses(engine.device.efuses)
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
