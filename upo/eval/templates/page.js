(function(){
  var table=document.getElementById('prompts'); if(!table) return;
  var body=table.tBodies[0], rows=Array.prototype.slice.call(body.rows);
  var sel=document.getElementById('sort-key'), dir=document.getElementById('sort-dir');
  var filter=document.getElementById('filter'), count=document.getElementById('shown');
  function value(row,key){var v=row.getAttribute('data-'+key);return v===null||v===''?NaN:parseFloat(v);}
  function sort(){
    var key=sel.value, down=dir.value==='desc';
    rows.sort(function(a,b){var x=value(a,key),y=value(b,key);
      if(isNaN(x)&&isNaN(y)) return value(a,'index')-value(b,'index');
      if(isNaN(x)) return 1; if(isNaN(y)) return -1; return down?y-x:x-y;});
    rows.forEach(function(r){body.appendChild(r);});
  }
  function apply(){
    var q=filter.value.toLowerCase(), n=0;
    rows.forEach(function(r){var hit=!q||r.textContent.toLowerCase().indexOf(q)>=0;
      r.classList.toggle('hidden',!hit); if(hit) n++;});
    count.textContent=n+' of '+rows.length+' prompts';
  }
  function remember(){  // the view in the address: a link shows the same sort and filter
    var h='sort='+encodeURIComponent(sel.value)+'&dir='+dir.value;
    if(filter.value) h+='&q='+encodeURIComponent(filter.value);
    try{history.replaceState(null,'','#'+h);}catch(e){}
  }
  sel.addEventListener('change',function(){  // a score sorts best first; the prompt's number in order
    dir.value=(sel.value==='index'||sel.value==='length')?'asc':'desc'; sort(); remember();});
  dir.addEventListener('change',function(){sort(); remember();});
  filter.addEventListener('input',function(){apply(); remember();});
  location.hash.replace(/^#/,'').split('&').forEach(function(part){
    var kv=part.split('='), v=decodeURIComponent(kv[1]||'');
    if(kv[0]==='sort'&&sel.querySelector('option[value="'+v+'"]')) sel.value=v;
    if(kv[0]==='dir'&&(v==='asc'||v==='desc')) dir.value=v;
    if(kv[0]==='q') filter.value=v;
  });
  sort(); apply();
})();
