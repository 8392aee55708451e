import BootSimulator
import EFuse
import ESPCore
import Flasher

/// What the pipeline learns about a device when it connects.
public struct LinkFacts: Sendable {
    public var mac: String
    public var chip: String
    /// Major revision (3 = ESP32 v3.x).
    public var chipRevision: Int
    public var flashID: UInt32
    public var flashSize: Int
    /// ESP32: the eFuses as the read registers show them (read-protected blocks read as zero).
    /// On an ESP32-S3/C3 this is an empty ESP32 array and means nothing: use ``fieldMapEFuses``.
    public var efuses: EFuseArray
    /// ESP32-S3/C3: the eFuse blocks as the read registers show them (read-protected blocks read
    /// as zero), laid out by ``fieldMap``; nil on the ESP32.
    public var fieldMapEFuses: EFuseBlockWords?
    public init(mac: String, chip: String, chipRevision: Int, flashID: UInt32, flashSize: Int, efuses: EFuseArray,
                fieldMapEFuses: EFuseBlockWords? = nil) {
        self.mac = mac; self.chip = chip; self.chipRevision = chipRevision
        self.flashID = flashID; self.flashSize = flashSize; self.efuses = efuses
        self.fieldMapEFuses = fieldMapEFuses
    }

    /// The eFuse field map of an ESP32-S3/C3 (nil on the ESP32).
    public var fieldMap: EFuseFieldMap? { fieldMapEFuses == nil ? nil : EFuseFieldMap.named(chip) }
}

/// How to run and judge a first boot.
public struct FirstBootRequest: Sendable {
    /// A console line meaning the app is up (nil: ESP-IDF's app start lines).
    public var readyLine: String?
    /// Seconds to watch a real device's console.
    public var timeout: Double
    /// In-process virtual devices: the boot simulator's configuration.
    public var simulator: BootConfig
    public init(readyLine: String?, timeout: Double, simulator: BootConfig) {
        self.readyLine = readyLine; self.timeout = timeout; self.simulator = simulator
    }
}

/// What a first boot showed.
public struct FirstBootReport: Sendable {
    public var booted: Bool
    /// Why not, in a sentence.
    public var reason: String?
    /// The console as a serial monitor shows it.
    public var console: String
    public var bootedPartition: String?
    public var bootedOffset: Int?
    public var resets: Int
    public init(booted: Bool, reason: String?, console: String, bootedPartition: String? = nil, bootedOffset: Int? = nil, resets: Int) {
        self.booted = booted; self.reason = reason; self.console = console
        self.bootedPartition = bootedPartition; self.bootedOffset = bootedOffset; self.resets = resets
    }
}

/// One connected device, as the pipeline drives it. Every operation is persistent when it
/// returns (a real chip's flash and eFuses are; a virtual device folder is saved).
///
/// Implementations: ``InProcessLink`` (a `virtual:DIR` folder, run in this process with the boot
/// simulator) and ``LoaderLink`` (serial ports and socket:// through the flasher's loader client,
/// the first boot watched on the console).
public protocol DeviceLink: AnyObject {
    var port: String { get }
    func identify() throws -> LinkFacts
    /// ESP32 only (an ESP32-S3/C3 link returns an empty array: use ``readFieldMapEFuses()``).
    func readEFuses() throws -> EFuseArray
    /// ESP32 only.
    func burn(_ requests: [EFuseBurnRequest]) throws
    /// ESP32-S3/C3: the eFuse blocks as the read registers show them.
    func readFieldMapEFuses() throws -> EFuseBlockWords
    /// ESP32-S3/C3: plans `operation` against the chip's eFuses as they are now (refused as the
    /// planner and `espefuse` refuse), burns it and reads back; throws when bits did not stick.
    func burnFieldMap(_ operation: FieldMapBurnOperation) throws
    /// ESP32-S3/C3: GET_SECURITY_INFO — all a chip in Secure Download Mode still tells (register
    /// reads refused). nil: the link cannot ask (the ESP32; in-process devices read directly).
    func securityInfo() throws -> LoaderSecurityInfo?
    /// Writes (name, flash offset, bytes) regions exactly as given (ciphertext already encrypted),
    /// after the safety rules (``FlashSafety``, the engine `flash` and `preflight` use) accepted
    /// them. `force` overrides the overridable findings (drills only).
    func write(_ regions: [(name: String, offset: Int, bytes: [UInt8])], force: Bool) throws
    func write(_ regions: [(name: String, offset: Int, bytes: [UInt8])]) throws
    /// Resets the chip into its firmware and watches the first boot; afterwards the link talks
    /// to the loader again.
    func firstBoot(_ request: FirstBootRequest) throws -> FirstBootReport
    /// Device-side virtual time spent so far (virtual devices; 0 when unknown).
    var virtualMilliseconds: Int { get }
    func close()
}

extension DeviceLink {
    public func write(_ regions: [(name: String, offset: Int, bytes: [UInt8])], force: Bool) throws { try write(regions) }
    public func readFieldMapEFuses() throws -> EFuseBlockWords {
        throw ProvisioningError(.connect, "\(port): this link reads only ESP32 eFuses")
    }
    public func securityInfo() throws -> LoaderSecurityInfo? { nil }
    public func burnFieldMap(_ operation: FieldMapBurnOperation) throws {
        throw ProvisioningError(.connect, "\(port): this link burns only ESP32 eFuses")
    }
}

/// Where a device is: opens its link.
public protocol ProvisioningTarget: Sendable {
    var port: String { get }
    func connect() throws -> any DeviceLink
}
