import EFuse
import ESPCore
import Flasher
import Transport

/// The eFuse client for the chip behind a `--port`: the ESP32's (``EFuseClient``) or, for an
/// ESP32-S3 / ESP32-C3, the field-map client (``FieldMapEFuseClient``).
public enum EFusePortTarget {
    case esp32(EFuseClient)
    case fieldMap(FieldMapEFuseClient)

    public var chip: String {
        switch self {
        case .esp32: return "esp32"
        case let .fieldMap(c): return c.map.chip
        }
    }
}

public enum EFusePortError: Error, Equatable, Sendable {
    /// `--chip` names another chip than the one on the port.
    case chipMismatch(requested: String, detected: String, port: String)
    case unknownChip(String)
}

extension EFusePortError: DiagnosticConvertible {
    public var diagnostic: Diagnostic {
        switch self {
        case let .chipMismatch(requested, detected, port):
            return Diagnostic("--chip \(requested) was given but the chip on \(port) is an \(detected.uppercased()); nothing was read or burned",
                              hint: "check the board on \(port), or leave out --chip to use the detected chip")
        case let .unknownChip(c):
            return Diagnostic("--chip \(c) is not a chip whose eFuses espforge burns over a port",
                              hint: "give esp32, esp32s3 or esp32c3")
        }
    }
}

public enum EFusePort {
    /// Opens `port`, detects the chip (GET_SECURITY_INFO's chip id, else the ROM magic word;
    /// a chip that is neither an S3 nor a C3 is taken for the ESP32, as before) and checks it
    /// against `chip` when given.
    public static func open(port: String, baud: Int?, before: ResetMode = .defaultReset, chip: String? = nil) throws -> EFusePortTarget {
        let requested = chip?.lowercased()
        if let requested, requested != "esp32", EFuseFieldMap.named(requested) == nil {
            throw EFusePortError.unknownChip(requested)
        }
        let access = try openRegisterAccess(port: port, baud: baud, before: before)
        let detected = detect(access) ?? "esp32"
        if let requested, requested != detected {
            throw EFusePortError.chipMismatch(requested: requested, detected: detected, port: port)
        }
        if detected == "esp32" { return .esp32(EFuseClient(access: access)) }
        return .fieldMap(try FieldMapEFuseClient(access: access, chip: detected))
    }

    /// The S3/C3 chip name behind `access`, or nil (an ESP32 or an unknown chip).
    public static func detect(_ access: any RegisterAccess) -> String? {
        if let client = access as? LoaderClient { return ChipProbe.detectFieldMapChip(client)?.name }
        guard let magic = try? access.readRegister(ChipProbe.romMagicAddress) else { return nil }
        return FieldMapChipFacts.table.first { $0.magic.contains(magic) }?.name
    }
}
