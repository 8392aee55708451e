import Crypto
import EFuse
import ESPCore

/// The production manifest `espforge.toml`: what to put on every device of a line and how.
///
/// Paths are kept as written (relative paths are relative to the manifest's folder; use
/// ``resolve(_:relativeTo:)``). Images may be listed one by one or come from an ESP-IDF build
/// directory (`[build] dir`, read with ``IDFBuild``).
public struct Manifest: Sendable, Equatable {
    public static let currentVersion = 1

    public var version: Int
    public var chip: ChipSettings
    public var buildDir: String?
    public var images: Images
    public var partitionsCSV: String?
    public var signing: Signing?
    public var flashEncryption: FlashEncryptionSettings
    public var nvs: NVSSettings?
    public var efuse: EFusePlan
    public var registry: RegistrySettings
    public var firstBoot: FirstBoot
    /// Key custody: the PKCS#11 module and PIN file for a `[signing] key = "pkcs11:…"`.
    public var pkcs11: PKCS11Settings = PKCS11Settings()
    /// `[escrow] public_key`: per-device secrets are sealed to this key (path as written).
    public var escrowPublicKey: String?
    /// `[station] slots`: the fixture's slots for `espforge station` (empty: none).
    public var stationSlots: [StationSlot] = []

    public init(version: Int = Manifest.currentVersion, chip: ChipSettings, buildDir: String? = nil,
                images: Images = Images(), partitionsCSV: String? = nil, signing: Signing? = nil,
                flashEncryption: FlashEncryptionSettings = FlashEncryptionSettings(), nvs: NVSSettings? = nil,
                efuse: EFusePlan = EFusePlan(), registry: RegistrySettings = RegistrySettings(),
                firstBoot: FirstBoot = FirstBoot()) {
        self.version = version; self.chip = chip; self.buildDir = buildDir; self.images = images
        self.partitionsCSV = partitionsCSV; self.signing = signing; self.flashEncryption = flashEncryption
        self.nvs = nvs; self.efuse = efuse; self.registry = registry; self.firstBoot = firstBoot
    }

    public struct ChipSettings: Sendable, Equatable {
        /// `esp32` (the only chip provisioning supports today; `esp32s3`/`esp32c3` are parsed).
        public var type: String
        /// Lowest accepted chip revision (e.g. 3 for ESP32 rev 3 / v3.0), if any.
        public var minRevision: Int?
        /// Flash size in bytes.
        public var flashSize: Int
        public var flashMode: String?
        public var flashFreq: String?
        public init(type: String = "esp32", minRevision: Int? = nil, flashSize: Int, flashMode: String? = nil, flashFreq: String? = nil) {
            self.type = type; self.minRevision = minRevision; self.flashSize = flashSize
            self.flashMode = flashMode; self.flashFreq = flashFreq
        }
    }

    public struct ImageRef: Sendable, Equatable {
        public var path: String
        public var offset: Int
        public init(path: String, offset: Int) { self.path = path; self.offset = offset }
    }

    public struct Images: Sendable, Equatable {
        public var bootloader: ImageRef?
        public var partitionTable: ImageRef?
        public var app: ImageRef?
        public var otadata: ImageRef?
        public init(bootloader: ImageRef? = nil, partitionTable: ImageRef? = nil, app: ImageRef? = nil, otadata: ImageRef? = nil) {
            self.bootloader = bootloader; self.partitionTable = partitionTable; self.app = app; self.otadata = otadata
        }
        /// (name, image) pairs in flash order of their keys.
        public var all: [(name: String, image: ImageRef)] {
            [("bootloader", bootloader), ("partition_table", partitionTable), ("otadata", otadata), ("app", app)]
                .compactMap { n, i in i.map { (n, $0) } }
        }
    }

    public enum Signing: Sendable, Equatable {
        /// espforge signs bootloader and app with this RSA-3072 PEM private key.
        case key(path: String)
        /// Signatures made elsewhere (an HSM): the public key and one raw signature file per image.
        case external(publicKey: String, bootloaderSignature: String, appSignature: String)
        /// The images already carry their signature blocks (ESP-IDF signed them).
        case presigned
    }

    public struct PKCS11Settings: Sendable, Equatable {
        /// `[signing] pkcs11_module`: the PKCS#11 library to load.
        public var module: String?
        /// `[signing] pkcs11_pin_file`: a PIN file (mode 0600).
        public var pinFile: String?
        public init(module: String? = nil, pinFile: String? = nil) { self.module = module; self.pinFile = pinFile }
    }

    public enum FlashEncryptionMode: String, Sendable, Equatable, CaseIterable {
        /// No flash encryption.
        case none
        /// The bootloader encrypts flash in place on first boot (ESP-IDF's own flow).
        case onChip = "on-chip"
        /// espforge makes a per-device key, burns it and writes ciphertext.
        case host
    }

    public struct FlashEncryptionSettings: Sendable, Equatable {
        public var mode: FlashEncryptionMode
        /// Release mode (FLASH_CRYPT_CNT fully set, UART download crypto disabled) vs development.
        public var release: Bool
        public init(mode: FlashEncryptionMode = .none, release: Bool = true) { self.mode = mode; self.release = release }
    }

    public struct NVSSettings: Sendable, Equatable {
        /// NVS generator config CSV (namespaces, keys, types, constants).
        public var config: String
        /// Per-device values CSV: one row per device, first column its identity (serial number).
        public var values: String
        /// Partition the NVS image goes into.
        public var partition: String
        /// Encrypt NVS with a fresh per-device key (written to `keysPartition`).
        public var encrypt: Bool
        public var keysPartition: String?
        public init(config: String, values: String, partition: String = "nvs", encrypt: Bool = true, keysPartition: String? = nil) {
            self.config = config; self.values = values; self.partition = partition
            self.encrypt = encrypt; self.keysPartition = keysPartition
        }
    }

    /// eFuses burned at the very end, after the device booted and verified.
    public struct EFusePlan: Sendable, Equatable {
        /// Fields set to all ones (1 for one-bit flags), e.g. JTAG_DISABLE.
        public var burn: [String]
        /// Fields whose write-protection bit is burned.
        public var writeProtect: [String]
        public init(burn: [String] = [], writeProtect: [String] = []) { self.burn = burn; self.writeProtect = writeProtect }
    }

    public struct RegistrySettings: Sendable, Equatable {
        /// `sqlite:PATH`, a plain path, or `postgres://user:pass@host:port/db`. nil: the default.
        public var url: String?
        /// Name of this station, recorded with every device.
        public var station: String?
        public init(url: String? = nil, station: String? = nil) { self.url = url; self.station = station }
    }

    public struct FirstBoot: Sendable, Equatable {
        /// A line the app prints when it is up (real devices); nil: any app start counts.
        public var readyLine: String?
        /// Seconds to wait for it.
        public var timeout: Int
        public init(readyLine: String? = nil, timeout: Int = 30) { self.readyLine = readyLine; self.timeout = timeout }
    }

    /// SHA-256 of the manifest file's bytes (recorded with each device), lowercase hex.
    public static func hash(of bytes: [UInt8]) -> String {
        SHA256.hash(data: bytes).map { String(format2: $0) }.joined()
    }

    /// `path` made absolute against the manifest's folder (absolute paths stay as they are).
    public static func resolve(_ path: String, relativeTo manifestDir: String) -> String {
        if path.hasPrefix("/") || manifestDir.isEmpty { return path }
        return manifestDir.hasSuffix("/") ? manifestDir + path : manifestDir + "/" + path
    }
}

extension String {
    init(format2 byte: UInt8) {
        let s = String(byte, radix: 16)
        self = s.count == 1 ? "0" + s : s
    }
}

public struct ManifestError: Error, DiagnosticConvertible, Equatable {
    public var message: String
    public var position: TOMLPosition?
    public var hint: String?
    public init(_ message: String, at position: TOMLPosition?, hint: String? = nil) {
        self.message = message; self.position = position; self.hint = hint
    }
    public var diagnostic: Diagnostic {
        Diagnostic(message, line: position?.line, column: position?.column, hint: hint)
    }
}
