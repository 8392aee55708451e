import BootSimulator
import Diagnostics
import EFuse
import ESPCore
import Flasher
import Foundation
import Transport
import VirtualDevice

/// How ``LoaderLink`` talks to chips.
public struct LoaderLinkOptions: Sendable {
    public var session = SessionOptions()
    /// Wait between reading console bytes.
    public var pollInterval = 0.1
    /// A console quiet for this long is given to the doctor (a halted boot prints nothing more).
    public var quietSeconds = 3.0
    public init() {}
}

/// A device on a serial port or socket:// (a served virtual device, a network serial bridge),
/// through the flasher: the loader client for identity and eFuses, the flash session for writes
/// (stub, compression, MD5 verification, reconnect and resume), and the console for the first
/// boot: a hard reset over DTR/RTS on serial ports, the ROM's run-user-code command on links
/// without modem lines; then the log is watched until the app's ready line, a boot loop, a
/// failure the doctor names, or the timeout.
///
/// ESP32, ESP32-S3 and ESP32-C3: the session detects the chip (S3/C3 through GET_SECURITY_INFO);
/// on an S3/C3 the eFuses are the chip's field-map blocks (``readFieldMapEFuses()``,
/// ``burnFieldMap(_:)`` through ``FieldMapEFuseClient``), the ESP32 eFuse calls refuse, and the
/// stub is the chip's own (see ``LoaderLinkOptions``).
public final class LoaderLink: DeviceLink {
    public let port: String
    let options: LoaderLinkOptions
    private var session: FlashSession?
    /// The chip and factory MAC the first connection found: every later connection (after a burn
    /// or a first boot) must find the same, or it is another board and nothing more is done.
    public private(set) var chip: ChipSpec?
    private var mac: String?
    public var virtualMilliseconds: Int { 0 }

    public init(port: String, options: LoaderLinkOptions) throws {
        self.port = port
        self.options = options
        try reconnect()
    }

    /// The session options: S3/C3 allowed; a stub given without a per-chip lookup is the ESP32's,
    /// so an S3/C3 gets its own stub, found where `flash` finds it (none found: its ROM loader).
    var sessionOptions: SessionOptions {
        var o = options.session
        o.after = .noReset
        o.fieldMapChips = true
        if o.stubForChip == nil, let given = o.stub {
            o.stubForChip = { name in name == "esp32" ? given : try StubChoice.resolve(forChip: name).stub }
        }
        return o
    }

    private func reconnect() throws {
        session?.finishWithoutReset()
        session = nil
        let s = FlashSession(port: port, options: sessionOptions)
        try s.connect()
        if let known = chip, let found = s.spec, known.name != found.name {
            s.finishWithoutReset()
            throw FlasherError.differentBoard(port: port, expected: known.displayName, found: found.displayName)
        }
        let found = Self.factoryMAC(s)
        if let known = mac, let found, known != found {
            s.finishWithoutReset()
            throw FlasherError.differentBoard(port: port, expected: known, found: found)
        }
        chip = s.spec
        mac = mac ?? found
        session = s
    }

    /// The factory MAC the session read when it connected (no extra traffic).
    static func factoryMAC(_ s: FlashSession) -> String? {
        if let fm = s.fieldMapChip { return EFuseFieldMapSummary(words: fm.words, map: fm.map).mac }
        return s.facts.map { MACAddress.format($0.efuses.esp32MAC()) }
    }

    private func live() throws -> FlashSession {
        if let session { return session }
        try reconnect()
        guard let session else { throw ProvisioningError(.connect, "no connection to \(port)") }
        return session
    }

    /// The S3/C3 connection's chip facts, nil on an ESP32.
    private func fieldMapChip() throws -> FieldMapTarget? { try live().fieldMapChip }

    public func identify() throws -> LinkFacts {
        let s = try live()
        let info = try s.chipInfo()
        if let fm = s.fieldMapChip {
            return LinkFacts(mac: info.mac, chip: fm.spec.name, chipRevision: info.majorRevision, flashID: s.flashID,
                             flashSize: fm.flashSize ?? info.flashSize, efuses: EFuseArray(layout: .esp32),
                             fieldMapEFuses: try readFieldMapEFuses())
        }
        let efuses = try readEFuses()
        return LinkFacts(mac: info.mac, chip: info.chip.lowercased().replacingOccurrences(of: "-", with: ""),
                         chipRevision: info.majorRevision, flashID: s.flashID, flashSize: info.flashSize, efuses: efuses)
    }

    /// ESP32: the eFuse array. ESP32-S3/C3: an empty ESP32 array (``DeviceLink``), never the
    /// ESP32's registers read on another chip.
    public func readEFuses() throws -> EFuseArray {
        if try fieldMapChip() != nil { return EFuseArray(layout: .esp32) }
        return try live().withClient { try ChipProbe.readEFuses($0) }
    }

    public func burn(_ requests: [EFuseBurnRequest]) throws {
        let s = try live()
        if let fm = s.fieldMapChip {
            throw ProvisioningError(.connect, "\(port): ESP32 eFuse requests cannot be burned on an \(fm.spec.displayName); burn its field map (burnFieldMap)")
        }
        guard let client = s.client else { throw ProvisioningError(.connect, "no connection to \(port)") }
        let eFuses = EFuseClient(access: client)
        let report = try eFuses.execute(try eFuses.plan(requests))
        guard report.allStuck else {
            let stray = report.strayBits.sorted { $0.key < $1.key }.map { "BLOCK\($0.key): \($0.value) unplanned bit(s)" }
            throw LinkError.burnDidNotStick(report.changes.filter { !$0.stuck }.map(\.name) + stray)
        }
    }

    /// The S3/C3 eFuse client on the live connection.
    private func fieldMapClient(_ s: FlashSession) throws -> FieldMapEFuseClient {
        guard let fm = s.fieldMapChip else {
            throw ProvisioningError(.connect, "\(port): an \(s.spec?.displayName ?? "ESP32") has no eFuse field map; use the ESP32 eFuse calls")
        }
        guard let client = s.client else { throw ProvisioningError(.connect, "no connection to \(port)") }
        return try FieldMapEFuseClient(access: client, chip: fm.map.chip)
    }

    /// ESP32-S3/C3: every block as the read registers show it, read until two readings agree.
    public func readFieldMapEFuses() throws -> EFuseBlockWords {
        let s = try live()
        return try s.withClient { _ in try fieldMapClient(s).snapshot() }
    }

    /// ESP32-S3/C3: plan against the chip as it reads now (refused as the planner refuses), burn,
    /// read back. Blocks whose bits did not all stick (or that took unplanned bits) throw
    /// ``LinkError/burnDidNotStick(_:)`` naming them. The connection is then opened again, so
    /// what follows (the safety rules of a write, a Secure Boot stub start) sees the burned eFuses.
    public func burnFieldMap(_ operation: FieldMapBurnOperation) throws {
        let s = try live()
        let client = try fieldMapClient(s)
        let (plan, before) = try client.plan(operation)
        if plan.isEmpty { return }
        let report = try client.execute(plan, before: before)
        // The session's copy of the eFuses is stale now.
        session?.finishWithoutReset()
        session = nil
        guard report.allStuck else {
            throw LinkError.burnDidNotStick(report.blocks.filter { !$0.stuck }.map { r in
                var parts: [String] = []
                if r.missingBits > 0 { parts.append("\(r.missingBits) of \(r.bits) bits not set") }
                if r.strayBits > 0 { parts.append("\(r.strayBits) unplanned bits set") }
                if r.codingErrors > 0 { parts.append("\(r.codingErrors) coding errors") }
                return "\(r.name) (\(parts.joined(separator: ", ")))"
            })
        }
    }

    /// ESP32-S3/C3: GET_SECURITY_INFO over a fresh ROM connection (the session closed first):
    /// what the chip says about its security eFuses, also in Secure Download Mode, where
    /// ``readFieldMapEFuses()`` cannot read (the ROM refuses READ_REG). nil on an ESP32.
    public func securityInfo() throws -> LoaderSecurityInfo? {
        session?.finishWithoutReset()
        session = nil
        return try LoaderSecurityInfo.read(port: port, options: sessionOptions)
    }

    public func write(_ regions: [(name: String, offset: Int, bytes: [UInt8])]) throws { try write(regions, force: false) }

    public func write(_ regions: [(name: String, offset: Int, bytes: [UInt8])], force: Bool) throws {
        let s = try live()
        // The safety rules (the same engine as `flash` and `preflight`) see the regions exactly as
        // they will be written (headers are never rewritten: no --flash-mode/--flash-freq/--flash-size).
        let plan: SafetyReport
        if let fm = s.fieldMapChip {
            // The chip's own facts (field map, flash size, revision), the eFuses as they read now.
            var chip = fm
            chip.words = try readFieldMapEFuses()
            plan = FlashSafety.check(regions: regions, target: chip.target(source: "port \(port)"), force: force)
        } else {
            guard let facts = s.facts else { throw ProvisioningError(.write, "no connection to \(port)") }
            plan = FlashSafety.check(regions: regions, facts: facts, force: force)
        }
        if plan.refused { throw ProvisioningError(.write, "the flasher refused the write: \(plan.refusalText)") }
        _ = try s.write(plan)
    }

    /// FLASH_BEGIN tries of the ROM's run sequence on links without modem lines.
    static let firstBootBeginAttempts = 3

    public func firstBoot(_ request: FirstBootRequest) throws -> FirstBootReport {
        // The ROM loader (no stub) leaves for the firmware with FLASH_END(run); on a serial port
        // an EN pulse with IO0 released does the same on any board with the usual reset circuit.
        // ESP32-S3/C3: FLASH_BEGIN carries the encrypt word; on the USB-Serial-JTAG peripheral
        // (`usb-reset`) the EN pulse is timed for it.
        let beginWord = (chip.flatMap { SessionChipFacts.named($0.name) })?.beginCarriesEncryptFlag ?? false
        session?.finishWithoutReset()
        session = nil
        let link = try options.session.ports.open(port)
        defer { link.close() }
        // Loader reply frames still arriving before the console (links without modem lines).
        var skippingFrames = false, inFrame = false
        if link.kind == .serial {
            try ResetSequence.hardReset(link, usbJTAG: options.session.before == .usbReset)
            try link.setBaud(115_200)
        } else {
            let rom = LoaderClient(port: link)
            rom.timeout = options.session.timeout
            try rom.sync()
            // A FLASH_BEGIN refused as damaged (or unanswered) is repeated after a re-sync: the
            // chip that answered is still in its loader. Nothing is repeated once FLASH_END(run)
            // is sent (the console starts).
            try rom.runFirmware(encryptFlagWord: beginWord, attempts: Self.firstBootBeginAttempts)
            skippingFrames = true
        }
        var watch = BootWatch(readyLine: request.readyLine, defaultMarkers: VirtualFirmware.appStartLines)
        let deadline = Date().addingTimeInterval(request.timeout)
        var lastByte = Date()
        while watch.verdict == .watching, Date() < deadline {
            let asked = Date()
            let bytes = try link.read(timeout: options.pollInterval)
            if bytes.isEmpty {
                // Some links answer at once (in-process devices): wait out the interval anyway.
                let waited = Date().timeIntervalSince(asked)
                if waited < options.pollInterval { usleep(useconds_t((options.pollInterval - waited) * 1_000_000)) }
                if Date().timeIntervalSince(lastByte) >= options.quietSeconds { _ = watch.quiet() }
                continue
            }
            lastByte = Date()
            var console: [UInt8] = []
            for (i, b) in bytes.enumerated() {
                if skippingFrames {
                    if b == 0xC0 { inFrame.toggle(); continue }
                    if inFrame { continue }
                    skippingFrames = false
                }
                console += bytes[i...]
                break
            }
            if !console.isEmpty { watch.feed(console) }
        }
        let resets = watch.console.components(separatedBy: "\n").filter { $0.hasPrefix("rst:0x") }.count
        switch watch.verdict {
        case .ready:
            return FirstBootReport(booted: true, reason: nil, console: watch.console, bootedOffset: watch.bootedOffset, resets: resets)
        case .failed(let reason):
            return FirstBootReport(booted: false, reason: reason, console: watch.console, resets: resets)
        case .watching:
            let heard = watch.console.isEmpty ? "nothing on the console" : "no ready line"
            return FirstBootReport(booted: false, reason: "\(heard) within \(Int(request.timeout)) s", console: watch.console, resets: resets)
        }
    }

    public func close() {
        session?.finishWithoutReset()
        session = nil
    }
}

/// A serial port or socket:// address, provisioned through ``LoaderLink``.
public struct LoaderTarget: ProvisioningTarget {
    public let port: String
    public let options: LoaderLinkOptions
    /// Without a virtual-device opener in `options.session.ports`, `virtual:DIR?…` boards are
    /// opened by ``VirtualPorts/opener(firmware:)`` with no firmware (they print nothing on boot).
    public init(port: String, options: LoaderLinkOptions) {
        self.port = port
        var options = options
        if options.session.ports.virtual == nil { options.session.ports = VirtualPorts.opener() }
        self.options = options
    }
    public func connect() throws -> any DeviceLink { try LoaderLink(port: port, options: options) }
}

/// Failures of a device link that are not the flasher's or the transport's own.
public enum LinkError: Error, DiagnosticConvertible, Equatable, Sendable {
    /// An eFuse burn was executed but read back without (all of) its bits.
    case burnDidNotStick([String])

    public var diagnostic: Diagnostic {
        switch self {
        case .burnDidNotStick(let names):
            return Diagnostic("eFuses did not read back as burned: " + (names.isEmpty ? "protection bits" : names.joined(separator: ", ")),
                              hint: "check the chip's supply voltage during burning; the device is left as it is and recorded as failed")
        }
    }
}
