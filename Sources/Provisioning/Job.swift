import ESPCore
import Foundation
import KeyCustody
import NVS
import Partitions
import Registry

/// Everything the per-device pipeline needs, prepared once for a whole line (pure data: the CLI
/// reads the manifest and its files and builds this).
public struct ProvisioningJob: Sendable {
    public enum EncryptionMode: String, Sendable, Codable {
        case none
        /// Plaintext is written; the bootloader encrypts flash in place on first boot.
        case onChip = "on-chip"
        /// A fresh key per device is burned by espforge and ciphertext is written.
        case host
    }

    /// One image to write (already signed).
    public struct Image: Sendable {
        public var name: String
        public var offset: Int
        public var bytes: [UInt8]
        public init(name: String, offset: Int, bytes: [UInt8]) { self.name = name; self.offset = offset; self.bytes = bytes }
    }

    /// The chip the images are built for, as manifests name it (`esp32`, `esp32s3`, `esp32c3`);
    /// a device of another chip is refused at identify.
    public var chip: String = "esp32"
    public var images: [Image]
    public var partitionTableOffset: Int
    /// The partition table entries (to find NVS, nvs_keys and which partitions get encrypted).
    public var partitions: [PartitionEntry]
    public var mode: EncryptionMode
    /// Release mode flash encryption (FLASH_CRYPT_CNT fully set by the bootloader).
    public var release: Bool
    /// SHA-256 of the manifest (recorded with every device).
    public var manifestHash: String
    /// Secure Boot V2 public key digest the bootloader will burn (hex in the registry).
    public var secureBootDigest: [UInt8]?
    /// Per-device NVS: the identity pool's name and each identity's NVS CSV rows (already expanded).
    public var identityPool: String
    public var identities: [NVSDevice]
    /// The pool's rows as read from the values CSV by ``IdentityPoolFile`` (nil: derived from
    /// `identities`). A job with neither has no per-device values: no claim, the identity is the MAC.
    public var identityRows: [IdentityRow]? = nil
    public var nvsPartition: String
    public var nvsKeysPartition: String?
    public var encryptNVS: Bool
    /// eFuses burned at the very end (fields set to all ones) and write protections.
    public var finalBurn: [String]
    public var finalWriteProtect: [String]
    public var minRevision: Int?
    public var flashSize: Int
    public var station: String?
    /// Real devices: a console line that means the app is up (nil: the ESP-IDF app-start line).
    public var readyLine: String? = nil
    /// Real devices: seconds to watch the console for the first boot.
    public var bootTimeout: Double = 30
    /// Where the Secure Boot key lives, recorded with each device (a PKCS#11 URI without PIN).
    public var secureBootKeyID: String? = nil
    /// Escrow: every per-device secret is sealed to this key and stored before it is used.
    public var escrow: (any KeySealer)? = nil

    public init(images: [Image], partitionTableOffset: Int, partitions: [PartitionEntry], mode: EncryptionMode,
                release: Bool, manifestHash: String, secureBootDigest: [UInt8]?, identityPool: String,
                identities: [NVSDevice], nvsPartition: String = "nvs", nvsKeysPartition: String? = nil,
                encryptNVS: Bool = true, finalBurn: [String] = [], finalWriteProtect: [String] = [],
                minRevision: Int? = nil, flashSize: Int, station: String? = nil) {
        self.images = images; self.partitionTableOffset = partitionTableOffset; self.partitions = partitions
        self.mode = mode; self.release = release; self.manifestHash = manifestHash
        self.secureBootDigest = secureBootDigest; self.identityPool = identityPool; self.identities = identities
        self.nvsPartition = nvsPartition; self.nvsKeysPartition = nvsKeysPartition; self.encryptNVS = encryptNVS
        self.finalBurn = finalBurn; self.finalWriteProtect = finalWriteProtect; self.minRevision = minRevision
        self.flashSize = flashSize; self.station = station
    }

    public func partition(named name: String) -> PartitionEntry? { partitions.first { $0.name == name } }

    /// The partition that holds the NVS keys: the manifest's name, else the table's first
    /// nvs_keys partition (data, subtype 4).
    public var nvsKeysPartitionEntry: PartitionEntry? {
        let name = nvsKeysPartition ?? partitions.first(where: { $0.type == 1 && $0.subtype == 4 })?.name
        return name.flatMap { partition(named: $0) }
    }

    /// Which flash ranges the chip decrypts: bootloader, partition table, app partitions and
    /// partitions flagged `encrypted` (the host-mode write encrypts exactly these).
    public func isEncryptedInFlash(_ offset: Int) -> Bool {
        if offset < partitionTableOffset + 0x1000 { return true }
        guard let p = partitions.first(where: { offset >= Int($0.offset) && offset < Int($0.offset) + Int($0.size) }) else { return false }
        return p.type == 0 || p.isEncrypted
    }

    /// Whether devices claim an identity from a pool (the manifest has `[nvs] values`).
    public var claimsIdentities: Bool { identityRows != nil || !identities.isEmpty }
}

/// The pipeline's steps, in order. `--resume` continues after the last one recorded `ok`.
public enum ProvisionStep: String, Sendable, Codable, CaseIterable, Comparable {
    case connect, identify, claim
    case buildNVS = "build-nvs"
    case preflight, write
    case firstBoot = "first-boot"
    case verify
    case finalEFuses = "final-efuses"
    case record

    public var index: Int { Self.allCases.firstIndex(of: self) ?? 0 }
    public static func < (a: Self, b: Self) -> Bool { a.index < b.index }
}

/// Why a device failed, as one line (recorded in the registry and printed in the summary).
public struct ProvisioningError: Error, DiagnosticConvertible, Sendable, Equatable {
    public var step: ProvisionStep
    public var message: String
    public var hint: String?
    public init(_ step: ProvisionStep, _ message: String, hint: String? = nil) {
        self.step = step; self.message = message; self.hint = hint
    }
    public var diagnostic: Diagnostic { Diagnostic("\(step.rawValue): \(message)", hint: hint) }
}

/// Progress of one device, reported as steps start and end.
public struct ProvisionEvent: Sendable, Codable, Equatable {
    public enum State: String, Sendable, Codable { case started, ok, skipped, failed, done }
    public var port: String
    public var mac: String?
    public var step: String
    public var state: State
    public var detail: String?
    public init(port: String, mac: String?, step: String, state: State, detail: String? = nil) {
        self.port = port; self.mac = mac; self.step = step; self.state = state; self.detail = detail
    }
}

/// The end of one device's run.
public struct ProvisionResult: Sendable, Codable, Equatable {
    public var port: String
    public var mac: String?
    public var identity: String?
    public var ok: Bool
    public var failedStep: String?
    public var reason: String?
    /// The doctor's diagnosis of the boot log when the first boot failed.
    public var diagnosis: String?
    public var bootedPartition: String?
    public var virtualMilliseconds: Int
    public var resumedAfter: String?
    /// `provisioned`, `skipped` (already provisioned: left alone, counts as a pass), `failed`, or
    /// `stopped` (a stopping station ended it between two steps; nothing is marked failed and the
    /// device resumes from its last recorded step).
    public var state: State = .failed

    public enum State: String, Sendable, Codable { case provisioned, skipped, failed, stopped }
}
