# Doxygen input filter for include/fasvd/*.h (docs/Doxyfile.in): the headers
# document every declaration in plain C comments; make Doxygen read them.
# The opening comment of a header describes the file.
1s|^/\* |/** @file\n * |
# Section rulers (/* ----- name */) stay plain comments.
/^[[:space:]]*\/\* --/b
# A comment on lines of its own documents the declaration after it.
s|^\([[:space:]]*\)/\*\([^*]\)|\1/**\2|
# A comment after a member, an enumerator or a parameter documents it.
s|\([;,]\)\([[:space:]]*\)/\*\([^*]\)|\1\2/**<\3|
s|^\([[:space:]]*FASVD_[A-Z0-9_]*[[:space:]]*=[^/]*\)/\*\([^*]\)|\1/**<\2|
