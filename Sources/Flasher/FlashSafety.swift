import Diagnostics
import ESPCore

/// One file to write at one flash address.
public struct FlashRegion: Sendable, Equatable {
    public var address: Int
    public var data: [UInt8]
    /// Where it came from (file name), for messages.
    public var name: String

    public init(address: Int, data: [UInt8], name: String) {
        self.address = address
        self.data = data
        self.name = name
    }

    public var end: Int { address + data.count }
}

/// What the user asked for.
public struct FlashRequest: Sendable {
    public var regions: [FlashRegion]
    /// nil = `keep` (the default): the image headers are written as built.
    public var flashMode: String?
    public var flashFrequency: String?
    public var flashSize: String?
    public var encrypt: Bool
    public var force: Bool

    public init(regions: [FlashRegion], flashMode: String? = nil, flashFrequency: String? = nil, flashSize: String? = nil,
                encrypt: Bool = false, force: Bool = false) {
        self.regions = regions
        self.flashMode = flashMode
        self.flashFrequency = flashFrequency
        self.flashSize = flashSize
        self.encrypt = encrypt
        self.force = force
    }
}

extension FlashRequest {
    /// The request as the safety rules see it: every region a plan entry (encrypted by the chip
    /// with `--encrypt`), the flash options `nil` for keep.
    public var plan: FlashPlan {
        FlashPlan(entries: regions.map { PlanEntry(address: $0.address, name: $0.name, bytes: $0.data, encrypted: encrypt) },
                  options: FlashOptions(mode: flashMode, frequency: flashFrequency, size: flashSize, encryptAll: encrypt))
    }
}

extension ChipFacts {
    /// The facts the safety rules check against, as read from this chip.
    public var target: TargetFacts {
        TargetFacts(chip: spec, flashSize: flashSize, efuses: SecurityFuseFacts(esp32: efuses), source: "chip")
    }
}

/// The flasher's door to the one safety-rule engine (``SafetyRules``, in Diagnostics): the
/// request checked against the chip's facts. Nothing is sent to a chip unless
/// `check(...).refused` is false; ``FlashSession/write(_:)`` writes the report's entries.
public enum FlashSafety {
    public static func check(_ request: FlashRequest, facts: ChipFacts) -> SafetyReport {
        check(request, target: facts.target)
    }

    /// The request checked against facts read another way (an ESP32-S3/C3's field map).
    public static func check(_ request: FlashRequest, target: TargetFacts) -> SafetyReport {
        var report = SafetyRules.check(plan: request.plan, target: target, force: request.force)
        // Written in the order given (the rules see them sorted by address).
        let written = Dictionary(report.entries.map { ($0.address, $0.bytes) }, uniquingKeysWith: { first, _ in first })
        report.entries = request.regions.map {
            PlanEntry(address: $0.address, name: $0.name, bytes: written[$0.address] ?? $0.data, encrypted: request.encrypt)
        }
        return report
    }

    /// Regions to write, as a named list (provisioning's links), refused with the rules' codes.
    public static func check(regions: [(name: String, offset: Int, bytes: [UInt8])], facts: ChipFacts, force: Bool = false) -> SafetyReport {
        check(regions: regions, target: facts.target, force: force)
    }

    /// The same against facts read another way (an ESP32-S3/C3's field map).
    public static func check(regions: [(name: String, offset: Int, bytes: [UInt8])], target: TargetFacts, force: Bool = false) -> SafetyReport {
        check(FlashRequest(regions: regions.map { FlashRegion(address: $0.offset, data: $0.bytes, name: $0.name) }, force: force), target: target)
    }
}

extension SafetyReport {
    /// The entries as flash regions.
    public var regions: [FlashRegion] { entries.map { FlashRegion(address: $0.address, data: $0.bytes, name: $0.name) } }

    /// "CODE: message" of every blocking finding, for one error line.
    public var refusalText: String { findings.filter(\.blocks).map { "\($0.code): \($0.message)" }.joined(separator: "; ") }
}

let LoaderSectorSize = 0x1000

func hex(_ v: Int) -> String { "0x" + String(v, radix: 16) }
