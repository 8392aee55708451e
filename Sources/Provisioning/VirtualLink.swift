import BootSimulator
import EFuse
import ESPCore
import Flasher
import Foundation
import VirtualDevice

/// A virtual device folder (``DeviceStore``).
///
/// Flash and eFuses change together (a first boot encrypts flash and burns the key), so they are
/// saved as one transaction: both written as `.pending` files, then a commit marker, then both
/// renamed into place. A process killed at any point leaves either the old or the new pair
/// (``load()`` finishes a committed save or drops an uncommitted one).
public struct VirtualTarget: ProvisioningTarget {
    public let store: DeviceStore
    public var port: String { "virtual:" + store.directory }
    public init(directory: String) { store = DeviceStore(directory: directory) }

    public func connect() throws -> any DeviceLink { InProcessLink(target: self, device: try load()) }

    var marker: String { store.directory + "/save.commit" }
    var pendingFlash: String { store.flashPath + ".pending" }
    var pendingEFuses: String { store.efusePath + ".pending" }

    public func load() throws -> Device {
        store.removeLeftovers()
        try recover()
        return try store.load()
    }

    /// Persists flash and eFuses together.
    public func save(_ device: Device) throws {
        try Self.write(device.flash.bytes, to: pendingFlash)
        try Self.write(device.efuses.bytes, to: pendingEFuses)
        try Self.write([], to: marker)   // the commit point
        try recover()
    }

    /// Rolls a committed save forward; discards an uncommitted one.
    func recover() throws {
        let fm = FileManager.default
        if fm.fileExists(atPath: marker) {
            for (from, to) in [(pendingFlash, store.flashPath), (pendingEFuses, store.efusePath)] where fm.fileExists(atPath: from) {
                guard rename(from, to) == 0 else {
                    throw DeviceError.io(to, "cannot replace: \(String(cString: strerror(errno)))")
                }
            }
            try? fm.removeItem(atPath: marker)
        } else {
            try? fm.removeItem(atPath: pendingFlash)
            try? fm.removeItem(atPath: pendingEFuses)
        }
    }

    static func write(_ bytes: [UInt8], to path: String) throws {
        // Same helper and mode as the store (the pending eFuses hold the key).
        do { try AtomicFile.write(bytes, to: path, mode: DeviceStore.stateMode) } catch {
            throw DeviceError.io(path, error.diagnostic.message)
        }
    }
}

/// Register access over an in-memory device (the loader's eFuse window), for ``EFuseClient``.
final class EngineAccess: RegisterAccess {
    let engine: ProtocolEngine
    init(_ device: Device) {
        engine = ProtocolEngine(device: device)
        engine.beginConnection()
    }
    func readRegister(_ address: UInt32) throws -> UInt32 { engine.readRegister(address) }
    func writeRegister(_ address: UInt32, _ value: UInt32) throws { engine.writeRegister(address, value) }
}

/// A `virtual:DIR` device driven in this process: operations go straight to its state (flash
/// programmed with the flash chip's timing, eFuses through the controller model), the first boot
/// is the boot simulator, and the folder is saved after every operation.
public final class InProcessLink: DeviceLink {
    let target: VirtualTarget
    var device: Device
    public private(set) var virtualMilliseconds = 0
    public var port: String { target.port }

    init(target: VirtualTarget, device: Device) {
        self.target = target
        self.device = device
    }

    public func identify() throws -> LinkFacts {
        let d = device.description
        return LinkFacts(mac: d.mac, chip: d.chip, chipRevision: d.chipRevision, flashID: d.flashID,
                         flashSize: d.flashSize, efuses: device.efuses.readable(layout: .esp32))
    }

    public func readEFuses() throws -> EFuseArray { device.efuses.readable(layout: .esp32) }

    public func burn(_ requests: [EFuseBurnRequest]) throws {
        let access = EngineAccess(device)
        let client = EFuseClient(access: access)
        _ = try client.execute(try client.plan(requests))
        device.efuses = access.engine.device.efuses
        try target.save(device)
    }

    public func write(_ regions: [(name: String, offset: Int, bytes: [UInt8])]) throws { try write(regions, force: false) }

    public func write(_ regions: [(name: String, offset: Int, bytes: [UInt8])], force: Bool) throws {
        // The same safety rules as a write through a loader (LoaderLink), `flash` and `preflight`:
        // one engine (SafetyRules), the same codes on every link.
        let facts = ChipFacts(spec: .esp32, flashSize: device.flash.size, efuses: device.efuses.readable(layout: .esp32))
        let plan = FlashSafety.check(regions: regions, facts: facts, force: force)
        if plan.refused { throw ProvisioningError(.write, "the flasher refused the write: \(plan.refusalText)") }
        for r in regions {
            guard r.offset >= 0, r.offset + r.bytes.count <= device.flash.size else {
                throw ProvisioningError(.write, "\(r.name) at 0x\(String(r.offset, radix: 16)) does not fit the flash")
            }
            if let t = device.flash.eraseSectors(r.offset, r.bytes.count, timing: .w25q32jv) { virtualMilliseconds += Int(t * 1000) }
            if let t = device.flash.program(r.offset, r.bytes, timing: .w25q32jv) { virtualMilliseconds += Int(t * 1000) }
        }
        try target.save(device)
    }

    public func firstBoot(_ request: FirstBootRequest) throws -> FirstBootReport {
        var copy = device
        let outcome = BootSimulator(config: request.simulator).boot(device: &copy)
        virtualMilliseconds += outcome.virtualMilliseconds
        device = copy
        try target.save(device)
        return FirstBootReport(booted: outcome.booted, reason: outcome.reason ?? (outcome.booted ? nil : outcome.result.rawValue),
                               console: outcome.consoleText, bootedPartition: outcome.bootedPartition,
                               bootedOffset: outcome.bootedOffset, resets: outcome.resets)
    }

    public func close() {}
}
