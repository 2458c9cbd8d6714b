import sys
open(sys.argv[1],"w").write("int idl_norm_tables_placeholder_;\n")
