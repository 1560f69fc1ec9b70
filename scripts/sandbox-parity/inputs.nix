# Evaluates nix/package.nix against stubs and returns, per crane derivation, the inputs it
# declares and the environment-like attributes it sets (scripts/sandbox-parity/run.py reads
# this; docs/sandbox-parity.md). Nothing here needs nixpkgs:
#   * every formal of the file except `lib` and `craneLib` becomes a stub package that only
#     records its name ("cmake"), with output sub-attributes recording "prometheus.cli" etc.;
#   * `lib` offers only what a package file like ours uses (fileset, optionals, licenses…);
#   * `craneLib.<builder> args` returns `args` tagged with the builder's name, so the attrsets
#     the file hands to crane come back as data.
# `omit` drops stub inputs by name from every input list, as if the file did not list them
# (the negative runs use it: [ "curl" ], [ "prometheus.cli" ]).
#
#   nix-instantiate --eval --strict --json scripts/sandbox-parity/inputs.nix \
#     --arg file ./nix/package.nix --arg omit '[ ]'
{
  file ? ../../nix/package.nix,
  omit ? [ ],
}:
let
  inherit (builtins)
    attrNames
    concatMap
    elem
    filter
    functionArgs
    isAttrs
    isBool
    isFloat
    isInt
    isList
    isPath
    isString
    listToAttrs
    removeAttrs
    toString
    ;

  fn = import file;

  # Output names a nixpkgs package may be asked for. Another one fails the evaluation with
  # "attribute '<name>' missing": add it here and a row for "<pkg>.<name>" to inputs.tsv.
  outputNames = [
    "out"
    "bin"
    "dev"
    "lib"
    "cli"
    "man"
    "doc"
    "static"
  ];

  stubPkg =
    name:
    {
      __stubInput = name;
      pname = name;
      name = name;
      outPath = "/stub/${name}";
    }
    // listToAttrs (
      map (o: {
        name = o;
        value = {
          __stubInput = "${name}.${o}";
          pname = name;
          name = "${name}-${o}";
          outPath = "/stub/${name}.${o}";
        };
      }) outputNames
    );

  # Filesets become a tree of tagged attrsets; paths are kept as strings (toString does not
  # copy them into a store, which --json would do for a path value).
  fileset = {
    toSource =
      { root, fileset }:
      {
        __fileset = "toSource";
        root = toString root;
        inherit fileset;
      };
    unions = items: {
      __fileset = "unions";
      inherit items;
    };
    union = a: b: {
      __fileset = "unions";
      items = [
        a
        b
      ];
    };
    maybeMissing = p: {
      __fileset = "maybeMissing";
      path = toString p;
    };
  };

  lib = {
    inherit fileset;
    optional = c: x: if c then [ x ] else [ ];
    optionals = c: xs: if c then xs else [ ];
    optionalAttrs = c: a: if c then a else { };
    optionalString = c: s: if c then s else "";
    licenses = listToAttrs (
      map
        (n: {
          name = n;
          value = {
            shortName = n;
          };
        })
        [
          "asl20"
          "mit"
          "bsd3"
          "gpl2Only"
          "gpl3Only"
        ]
    );
    platforms = {
      linux = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      unix = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      all = [
        "x86_64-linux"
        "aarch64-linux"
      ];
    };
  };

  craneKinds = [
    "buildDepsOnly"
    "buildPackage"
    "cargoBuild"
    "cargoClippy"
    "cargoFmt"
    "cargoNextest"
    "cargoTest"
    "cargoDoc"
  ];
  craneLib =
    listToAttrs (
      map (k: {
        name = k;
        value = args: args // { __craneKind = k; };
      }) craneKinds
    )
    // {
      fileset.commonCargoSources = p: {
        __fileset = "commonCargoSources";
        path = toString p;
      };
    };

  formals = functionArgs fn;
  args = listToAttrs (
    map (n: {
      name = n;
      value =
        if n == "lib" then
          lib
        else if n == "craneLib" then
          craneLib
        else
          stubPkg n;
    }) (attrNames formals)
  );

  result = fn args;

  isStub = x: isAttrs x && x ? __stubInput;
  # A list attribute holding packages is an input list (nativeBuildInputs, buildInputs,
  # nativeCheckInputs, …). Anything in it that is not a stub is reported, and run.py fails.
  isInputList = v: isList v && v != [ ] && builtins.any isAttrs v;
  inputName = x: if isStub x then x.__stubInput else "<not a formal of the file: ${toString (x.name or "?")}>";
  envLike = v: isString v || isBool v || isInt v || isFloat v;

  describe =
    d:
    let
      plain = removeAttrs d [
        "__craneKind"
        "src"
        "cargoArtifacts"
        "meta"
        "env"
      ];
      names = attrNames plain;
      flatEnv = (d.env or { }) // listToAttrs (
        map (n: {
          name = n;
          value = plain.${n};
        }) (filter (n: envLike plain.${n}) names)
      );
    in
    {
      kind = d.__craneKind;
      inputs = listToAttrs (
        map (n: {
          name = n;
          value = filter (x: !(elem x omit)) (map inputName plain.${n});
        }) (filter (n: isInputList plain.${n}) names)
      );
      env = flatEnv;
      # Attributes that are neither inputs nor env-like: reported so a new one is noticed.
      other = filter (n: !(envLike plain.${n}) && !(isInputList plain.${n}) && plain.${n} != [ ]) names;
      source = if d ? src then d.src else null;
      usesCargoArtifacts = d ? cargoArtifacts;
    };

  crane = filter (n: isAttrs result.${n} && result.${n} ? __craneKind) (attrNames result);
  firstArtifacts = builtins.head (
    filter (x: x != null) (map (n: result.${n}.cargoArtifacts or null) crane ++ [ null ])
  );
in
{
  formals = attrNames formals;
  derivations =
    listToAttrs (
      map (n: {
        name = n;
        value = describe result.${n};
      }) crane
    )
    // (if firstArtifacts == null then { } else { deps = describe firstArtifacts; });
}
