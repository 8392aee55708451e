import ESPCore

/// The eFuse field map of a chip with the newer controller (ESP32-S3, ESP32-C3, …): eleven blocks,
/// a 32-bit WR_DIS word (BLOCK0 word 0) and a 7-bit RD_DIS field, six key blocks with a 4-bit
/// purpose each. The classic ESP32 keeps its own ``EFuseLayout`` (16-bit WR_DIS, 4-bit RD_DIS in
/// the same word, three key blocks), which the provisioning pipeline uses unchanged.
///
/// Fields reuse ``EFuseField``: `writeProtect` is the field's own WR_DIS bit (for BLOCK0 fields);
/// fields in BLOCK1…BLOCK10 are locked by their block's bit in ``blockWriteProtectBits`` and hidden
/// by ``blockReadProtectBits``. One table file per chip: `ESP32S3EFuseFields.swift`,
/// `ESP32C3EFuseFields.swift`.
public struct EFuseFieldMap: Sendable {
    public let chip: String
    /// Block names, BLOCK0 first (`BLOCK0`, `BLOCK_MAC_SYS`, …, `BLOCK_KEY0`…`BLOCK_KEY5`, …).
    public let blockNames: [String]
    /// 32-bit words per block, BLOCK0 first (BLOCK0 word 0 is WR_DIS).
    public let blockWordCounts: [Int]
    /// Address of the eFuse controller.
    public let controllerBase: UInt32
    /// Offset (from ``controllerBase``) of BLOCK0 word 0; the read registers of all blocks follow
    /// one another without gaps.
    public let firstReadRegisterOffset: UInt32
    /// Size of the controller's register space (the `espefuse --virt` file holds all of it).
    public let registerSpaceSize: Int
    /// WR_DIS bit that locks a whole block (nil for BLOCK0, locked per field).
    public let blockWriteProtectBits: [Int?]
    /// RD_DIS bit (0…6) that hides a whole block.
    public let blockReadProtectBits: [Int?]
    /// Block index of BLOCK_KEY0 (the six key blocks are consecutive).
    public let firstKeyBlock: Int
    /// KEY_PURPOSE_n values this chip accepts, with their names.
    public let keyPurposes: [EFuseKeyPurpose]
    public let fields: [EFuseField]
    /// Values assembled from several fields (e.g. WAFER_VERSION_MINOR = HI·8 + LO).
    public let composites: [EFuseCompositeField]

    public init(chip: String, blockNames: [String], blockWordCounts: [Int], controllerBase: UInt32,
                firstReadRegisterOffset: UInt32, registerSpaceSize: Int, blockWriteProtectBits: [Int?],
                blockReadProtectBits: [Int?], firstKeyBlock: Int, keyPurposes: [EFuseKeyPurpose],
                fields: [EFuseField], composites: [EFuseCompositeField]) {
        self.chip = chip
        self.blockNames = blockNames
        self.blockWordCounts = blockWordCounts
        self.controllerBase = controllerBase
        self.firstReadRegisterOffset = firstReadRegisterOffset
        self.registerSpaceSize = registerSpaceSize
        self.blockWriteProtectBits = blockWriteProtectBits
        self.blockReadProtectBits = blockReadProtectBits
        self.firstKeyBlock = firstKeyBlock
        self.keyPurposes = keyPurposes
        self.fields = fields
        self.composites = composites
    }

    public var blockCount: Int { blockWordCounts.count }
    public var totalWords: Int { blockWordCounts.reduce(0, +) }
    public static let keyBlockCount = 6

    public func field(named name: String) -> EFuseField? { fields.first { $0.name == name.uppercased() } }

    /// Offset (from ``controllerBase``) of `block`'s first read register.
    public func readRegisterOffset(block: Int) -> UInt32 {
        firstReadRegisterOffset + UInt32(4 * blockWordCounts.prefix(block).reduce(0, +))
    }

    public func purposeName(_ value: Int) -> String? { keyPurposes.first { $0.value == value }?.name }
    public func purposeValue(_ name: String) -> Int? { keyPurposes.first { $0.name == name.uppercased() }?.value }

    /// The field maps of the chips this type covers, by espforge/esptool chip name.
    public static let all: [EFuseFieldMap] = [.esp32s3, .esp32c3]

    public static func named(_ chip: String) -> EFuseFieldMap? {
        let key = chip.lowercased().replacingOccurrences(of: "-", with: "")
        return all.first { $0.chip == key }
    }
}

/// One KEY_PURPOSE_n value.
public struct EFuseKeyPurpose: Sendable, Hashable {
    public let value: Int
    public let name: String
    /// Keys with this purpose must be read-protected (the hardware reads them itself).
    public let readProtected: Bool

    public init(_ value: Int, _ name: String, readProtected: Bool) {
        self.value = value
        self.name = name
        self.readProtected = readProtected
    }
}

/// A value made of fields: Σ part · 2^shift.
public struct EFuseCompositeField: Sendable, Hashable {
    public let name: String
    public let parts: [Part]
    public let description: String

    public struct Part: Sendable, Hashable {
        public let field: String
        public let shift: Int
        public init(_ field: String, shift: Int) {
            self.field = field
            self.shift = shift
        }
    }

    public init(_ name: String, _ parts: [Part], _ description: String) {
        self.name = name
        self.parts = parts
        self.description = description
    }
}
