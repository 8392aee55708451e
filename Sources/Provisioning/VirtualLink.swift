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
    /// ESP32-S3/C3: the read-protected blocks' fuses (``DeviceStore/protectedEFusePath``).
    var pendingProtected: String { store.protectedEFusePath + ".pending" }

    public func load() throws -> Device {
        store.removeLeftovers()
        try recover()
        return try store.load()
    }

    /// Persists flash and eFuses together.
    public func save(_ device: Device) throws {
        try Self.write(device.flash.bytes, to: pendingFlash)
        let efuses = store.efuseFiles(of: device)
        try Self.write(efuses.efuse, to: pendingEFuses)
        // Read protection is never undone: once the file exists it is always rewritten.
        if let hidden = efuses.protected { try Self.write(hidden, to: pendingProtected) }
        try Self.write([], to: marker)   // the commit point
        try recover()
    }

    /// Rolls a committed save forward; discards an uncommitted one.
    func recover() throws {
        let fm = FileManager.default
        if fm.fileExists(atPath: marker) {
            for (from, to) in [(pendingFlash, store.flashPath), (pendingEFuses, store.efusePath), (pendingProtected, store.protectedEFusePath)]
            where fm.fileExists(atPath: from) {
                guard rename(from, to) == 0 else {
                    throw DeviceError.io(to, "cannot replace: \(String(cString: strerror(errno)))")
                }
            }
            try? fm.removeItem(atPath: marker)
        } else {
            try? fm.removeItem(atPath: pendingFlash)
            try? fm.removeItem(atPath: pendingEFuses)
            try? fm.removeItem(atPath: pendingProtected)
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
                         flashSize: d.flashSize, efuses: device.efuses.readable(layout: .esp32),
                         fieldMapEFuses: device.chip == nil ? nil : try readFieldMapEFuses())
    }

    public func readEFuses() throws -> EFuseArray { device.efuses.readable(layout: .esp32) }

    /// ESP32-S3/C3: the blocks as the controller's read registers show them (read-protected
    /// blocks as zeros).
    public func readFieldMapEFuses() throws -> EFuseBlockWords {
        guard let chip = device.chip else {
            throw ProvisioningError(.connect, "\(port): an ESP32 has no eFuse field map (use readEFuses)")
        }
        return FieldMapController.readable(device.cells ?? EFuseBlockWords(map: chip.efuseMap), map: chip.efuseMap)
    }

    /// ESP32-S3/C3: planned against the chip as it reads now and burned through the virtual
    /// eFuse controller's registers (program cycles, Reed–Solomon check values, reload), as a
    /// burn over a loader goes; refused when a bit did not stick.
    public func burnFieldMap(_ operation: FieldMapBurnOperation) throws {
        guard let chip = device.chip else {
            throw ProvisioningError(.connect, "\(port): an ESP32 is burned with ESP32 requests")
        }
        let access = EngineAccess(device)
        let client = try FieldMapEFuseClient(access: access, chip: chip.name, crystalHz: device.description.crystalHz)
        let (plan, before) = try client.plan(operation)
        guard !plan.isEmpty else { return }
        let report = try client.execute(plan, before: before)
        device.cells = access.engine.device.cells
        try target.save(device)
        guard report.allStuck else {
            throw ProvisioningError(.write, "eFuse burn did not stick: " + report.lines.filter { !$0.hasPrefix("OK") }.joined(separator: "; "),
                                    hint: "the device is left as it is and recorded as failed")
        }
    }

    public func burn(_ requests: [EFuseBurnRequest]) throws {
        guard device.chip == nil else {
            throw ProvisioningError(.connect, "\(port): an \(device.description.chip) is burned through its field map, not ESP32 requests")
        }
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
        let plan: (refused: Bool, text: String)
        if let chip = device.chip {
            // An S3/C3: the rules see the chip's own facts (its field map), as `flash` does.
            plan = try DevicePreflight.safety(regions: regions, words: try readFieldMapEFuses(), map: chip.efuseMap,
                                              flashSize: device.flash.size,
                                              chipRevision: device.description.chipRevision * 100 + (device.description.minorRevision ?? 0),
                                              source: port, force: force)
        } else {
            let facts = ChipFacts(spec: .esp32, flashSize: device.flash.size, efuses: device.efuses.readable(layout: .esp32))
            let report = FlashSafety.check(regions: regions, facts: facts, force: force)
            plan = (report.refused, report.refusalText)
        }
        if plan.refused { throw ProvisioningError(.write, "the flasher refused the write: \(plan.text)") }
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
