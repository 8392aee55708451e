import EFuse
import ESPCore
import Flasher
import SecureBoot

/// What `efuse` works on: a chip over a port (an ESP32, or an ESP32-S3/C3 detected there), or an
/// ESP32-S3/C3 eFuse file burned offline (`espefuse --virt` format).
public enum EFuseToolTarget {
    case esp32(EFuseClient, port: String)
    case fieldMapPort(FieldMapEFuseClient, port: String)
    case fieldMapFile(chip: String, path: String)

    /// Opens what the command line names: `virtFile` (with `chip`) offline, else the chip on
    /// `port` (detected; `chip` makes sure it is that one).
    public static func open(port: String?, baud: Int?, before: String, chip: String?, virtFile: String?) throws -> EFuseToolTarget {
        if let virtFile {
            guard port == nil else {
                throw UsageError("--port and --virt-file cannot be used together", hint: "--virt-file burns an S3/C3 eFuse file offline; --port talks to a chip")
            }
            guard let chip else { throw UsageError("--virt-file needs --chip", hint: "add --chip esp32s3 or --chip esp32c3") }
            return .fieldMapFile(chip: chip, path: virtFile)
        }
        guard let port else { throw UsageError("missing --port", hint: "give --port PORT, or --chip esp32s3|esp32c3 --virt-file FILE") }
        switch try EFusePort.open(port: port, baud: baud, before: try SessionOptions.resetMode(before), chip: chip) {
        case let .esp32(client): return .esp32(client, port: port)
        case let .fieldMap(client): return .fieldMapPort(client, port: port)
        }
    }
}

/// One `efuse` burn as the command line states it. The same words mean the ESP32's form or the
/// S3/C3 form by the chip the target turns out to be (``EFuseTool/burn(_:on:confirmed:dryRun:emit:)``).
public enum EFuseToolBurn: Sendable {
    /// NAME=VALUE assignments.
    case fields([String])
    /// ESP32: PURPOSE KEYFILE (BLOCK1 protected unless `protectESP32Key` is false).
    /// S3/C3: BLOCK_KEYn KEYFILE PURPOSE triples.
    case keys(arguments: [String], protectESP32Key: Bool, noReadProtect: Bool, noWriteProtect: Bool)
    /// ESP32: `esp32Key` (a PEM; the digest goes to BLOCK2). S3/C3: BLOCK_KEYn PEM SECURE_BOOT_DIGESTn triples.
    case keyDigests(esp32Key: String?, triples: [String], noWriteProtect: Bool)
    case writeProtect([String])
    case readProtect([String])
}

/// A summary, rendered both ways.
public struct EFuseToolSummary: Sendable {
    public var text: String
    public var json: String
}

/// The library entry point of `espforge efuse`: the summary and every burn, on any target, with
/// the plan shown through `emit` first and burned only when `confirmed` (never key material).
public enum EFuseTool {
    public static func summary(_ target: EFuseToolTarget, revealKeys: Bool) throws -> EFuseToolSummary {
        switch target {
        case let .fieldMapFile(chip, path):
            let (map, words) = try EFuseVirtualFile.read(path, chip: chip)
            let s = EFuseFieldMapSummary(words: words, map: map, revealKeys: revealKeys)
            return EFuseToolSummary(text: s.text(map: map), json: try JSONText.render(s))
        case let .fieldMapPort(client, _):
            let s = try client.summary(revealKeys: revealKeys)
            return EFuseToolSummary(text: s.text(map: client.map), json: try JSONText.render(s))
        case let .esp32(client, _):
            let s = try client.summary(revealKeys: revealKeys)
            return EFuseToolSummary(text: s.text, json: try s.json())
        }
    }

    public static func burn(_ burn: EFuseToolBurn, on target: EFuseToolTarget, confirmed: Bool, dryRun: Bool = false,
                            emit: (String) -> Void) throws -> EFuseBurnRun.Outcome {
        switch target {
        case let .esp32(client, port):
            let requests = try esp32Requests(burn)
            do {
                return try EFuseBurnRun.run(requests, client: client, portName: port, confirmed: confirmed, dryRun: dryRun, emit: emit)
            } catch let e as EFusePlanError {
                if case .badKeyLength = e, case let .keys(arguments, _, _, _) = burn, arguments.count == 2 {
                    throw FileContextError(file: arguments[1], underlying: e)
                }
                throw e
            }
        case let .fieldMapPort(client, port):
            return try withKeyFileContext(burn) {
                try FieldMapPortBurn.run(try fieldMapOperation(burn), client: client, portName: port, confirmed: confirmed,
                                         dryRun: dryRun, emit: emit)
            }
        case let .fieldMapFile(chip, path):
            return try withKeyFileContext(burn) {
                try FieldMapVirtualBurn.run(try fieldMapOperation(burn), chip: chip, file: path, confirmed: confirmed,
                                            dryRun: dryRun, emit: emit)
            }
        }
    }

    /// The ESP32's requests for `burn`.
    static func esp32Requests(_ burn: EFuseToolBurn) throws -> [EFuseBurnRequest] {
        switch burn {
        case let .fields(assignments): return try EFuseBurnRequest.fields(assignments)
        case let .keys(arguments, protect, _, _):
            guard arguments.count == 2 else {
                throw UsageError("the ESP32 takes PURPOSE KEYFILE", hint: "e.g. burn-key --port virtual:dev1 flash_encryption flash_key.bin")
            }
            return [try EFuseBurnRequest.key(purpose: arguments[0], keyFile: arguments[1], protect: protect)]
        case let .keyDigests(key, triples, noWriteProtect):
            guard let key, triples.isEmpty else {
                throw UsageError("the ESP32 takes --key PEM", hint: "e.g. burn-key-digest --port virtual:dev1 --key signing_key.pem")
            }
            return [.secureBootDigest(try SecureBootKeyFiles.esp32KeyDigest(file: key), writeProtect: !noWriteProtect)]
        case let .writeProtect(names): return names.map { .writeProtect($0) }
        case let .readProtect(names): return names.map { .readProtect($0) }
        }
    }

    /// The S3/C3 operation for `burn` (key files read here, bounded).
    static func fieldMapOperation(_ burn: EFuseToolBurn) throws -> FieldMapBurnOperation {
        switch burn {
        case let .fields(assignments):
            return .burn(try assignments.map { a -> (name: String, value: String) in
                guard let eq = a.firstIndex(of: "="), eq != a.startIndex else {
                    throw UsageError("'\(a)' is not NAME=VALUE", hint: "e.g. SECURE_BOOT_EN=1 SPI_BOOT_CRYPT_CNT=1")
                }
                return (String(a[..<eq]), String(a[a.index(after: eq)...]))
            })
        case let .keys(arguments, _, noReadProtect, noWriteProtect):
            let requests = try keyTriples(arguments, command: "burn-key") { try BoundedFile.read($0, limit: .key) }
            return .burnKeys(requests, noReadProtect: noReadProtect, noWriteProtect: noWriteProtect)
        case let .keyDigests(key, triples, noWriteProtect):
            guard key == nil else {
                throw UsageError("--key is for the ESP32", hint: "on an ESP32-S3/C3 give BLOCK_KEYn KEYFILE SECURE_BOOT_DIGESTn triples")
            }
            let requests = try keyTriples(triples, command: "burn-key-digest") { file in
                do { return try KeyMaterial.load(file: file).verifyingKey.keyDigest() } catch { throw FileContextError(file: file, underlying: error) }
            }
            return .burnKeyDigests(requests, noWriteProtect: noWriteProtect)
        case let .writeProtect(names): return .writeProtect(names)
        case let .readProtect(names): return .readProtect(names)
        }
    }

    /// A key of the wrong length is reported against its file.
    static func withKeyFileContext<T>(_ burn: EFuseToolBurn, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as FieldMapBurnError {
            if case let .badKeyLength(block, _, _, _) = e, case let .keys(arguments, _, _, _) = burn,
               let i = stride(from: 0, to: arguments.count - 2, by: 3).first(where: { arguments[$0].uppercased() == block }) {
                throw FileContextError(file: arguments[i + 1], underlying: e)
            }
            throw e
        }
    }

    /// `BLOCK FILE PURPOSE` triples of the S3/C3 burn-key and burn-key-digest.
    static func keyTriples(_ args: [String], command: String,
                           load: (String) throws -> [UInt8]) throws -> [FieldMapBurnPlanner.KeyRequest] {
        guard !args.isEmpty, args.count % 3 == 0 else {
            throw UsageError("\(command) takes BLOCK FILE PURPOSE triples (\(args.count) arguments given)",
                             hint: "e.g. \(command) --port PORT BLOCK_KEY0 \(command == "burn-key" ? "key.bin XTS_AES_128_KEY" : "sb.pem SECURE_BOOT_DIGEST0") (or --chip esp32s3 --virt-file efuse.bin instead of --port)")
        }
        return try stride(from: 0, to: args.count, by: 3).map { i in
            FieldMapBurnPlanner.KeyRequest(block: args[i], data: try load(args[i + 1]), purpose: args[i + 2])
        }
    }
}
