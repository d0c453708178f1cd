"use strict";(self.rspackChunkworkbench_lab=self.rspackChunkworkbench_lab||[]).push([[700],{646(r,e,o){var t=o(601),a=o.n(t),n=o(314),i=(o.n(n))()(a());i.push([r.id,`/* The researcher's panels: JupyterLab's own variables, so light and dark themes both work. */
.wb-Banner {
  display: flex;
  gap: 16px;
  align-items: center;
  padding: 4px 12px;
  font-size: var(--jp-ui-font-size1);
  background: var(--jp-brand-color3);
  color: var(--jp-ui-font-color0);
  border-bottom: var(--jp-border-width) solid var(--jp-border-color1);
  min-height: 20px;
}
.wb-Banner-study { font-weight: 600; }
.wb-Banner-user { margin-left: auto; color: var(--jp-ui-font-color2); }
.wb-mod-warning { color: var(--jp-warn-color0); }
.wb-Panel {
  padding: 8px 12px;
  overflow: auto;
  font-size: var(--jp-ui-font-size1);
  color: var(--jp-ui-font-color1);
  background: var(--jp-layout-color1);
  min-width: 300px;
}
.wb-Panel h2 { font-size: var(--jp-ui-font-size2); margin: 4px 0 8px; }
.wb-Panel-note { color: var(--jp-ui-font-color2); font-size: var(--jp-ui-font-size0); }
.wb-Panel-bar { display: flex; gap: 12px; align-items: center; margin-bottom: 8px; }
.wb-Badge {
  display: inline-block;
  margin-left: 6px;
  padding: 0 6px;
  border-radius: 8px;
  font-size: var(--jp-ui-font-size0);
  background: var(--jp-layout-color3);
}
.wb-Badge-aggregates, .wb-State-returned, .wb-State-draft { background: var(--jp-warn-color3); }
.wb-State-released, .wb-State-approved { background: var(--jp-success-color3); }
.wb-State-rejected { background: var(--jp-error-color3); }
.wb-Catalog-view { margin-bottom: 8px; }
.wb-Catalog-view summary { cursor: pointer; }
.wb-Catalog-title { color: var(--jp-ui-font-color2); }
.wb-Catalog-facts { margin: 4px 0; padding-left: 16px; }
.wb-Catalog-columns { margin: 4px 0; padding-left: 0; list-style: none; }
.wb-Catalog-columns li {
  padding: 1px 0;
  border-bottom: var(--jp-border-width) solid var(--jp-border-color2);
}
.wb-Sens-sensitive, .wb-Sens-direct_identifier { color: var(--jp-error-color1); }
.wb-Sens-quasi_identifier { color: var(--jp-warn-color1); }
.wb-Cert-valid { color: var(--jp-success-color1); }
.wb-Cert-invalid, .wb-Cert-missing { color: var(--jp-error-color1); }
.wb-Request {
  border: var(--jp-border-width) solid var(--jp-border-color2);
  border-radius: 4px;
  padding: 6px 8px;
  margin-bottom: 8px;
}
.wb-Request-checks { margin-top: 4px; }
.wb-Finding-fail { color: var(--jp-error-color1); }
.wb-Finding-review { color: var(--jp-warn-color1); }
.wb-Request-comments { margin-top: 4px; padding-left: 8px; border-left: 2px solid var(--jp-border-color2); }
.wb-Request-actions { margin-top: 6px; display: flex; gap: 8px; }
.wb-RequestForm label { display: block; margin-bottom: 8px; }
.wb-RequestForm input, .wb-RequestForm select { display: block; width: 100%; margin-top: 2px; }
`,""]),o.d(e,{},{A:i})},314(r){r.exports=function(r){var e=[];return e.toString=function(){return this.map(function(e){var o="",t=void 0!==e[5];return e[4]&&(o+="@supports (".concat(e[4],") {")),e[2]&&(o+="@media ".concat(e[2]," {")),t&&(o+="@layer".concat(e[5].length>0?" ".concat(e[5]):""," {")),o+=r(e),t&&(o+="}"),e[2]&&(o+="}"),e[4]&&(o+="}"),o}).join("")},e.i=function(r,o,t,a,n){"string"==typeof r&&(r=[[null,r,void 0]]);var i={};if(t)for(var s=0;s<this.length;s++){var c=this[s][0];null!=c&&(i[c]=!0)}for(var l=0;l<r.length;l++){var p=[].concat(r[l]);t&&i[p[0]]||(void 0!==n&&(void 0===p[5]||(p[1]="@layer".concat(p[5].length>0?" ".concat(p[5]):""," {").concat(p[1],"}")),p[5]=n),o&&(p[2]&&(p[1]="@media ".concat(p[2]," {").concat(p[1],"}")),p[2]=o),a&&(p[4]?(p[1]="@supports (".concat(p[4],") {").concat(p[1],"}"),p[4]=a):p[4]="".concat(a)),e.push(p))}},e}},601(r){r.exports=function(r){return r[1]}},72(r){var e=[];function o(r){for(var o=-1,t=0;t<e.length;t++)if(e[t].identifier===r){o=t;break}return o}function t(r,t){for(var a={},n=[],i=0;i<r.length;i++){var s=r[i],c=t.base?s[0]+t.base:s[0],l=a[c]||0,p="".concat(c," ").concat(l);a[c]=l+1;var d=o(p),u={css:s[1],media:s[2],sourceMap:s[3],supports:s[4],layer:s[5]};if(-1!==d)e[d].references++,e[d].updater(u);else{var b=function(r,e){var o=e.domAPI(e);return o.update(r),function(e){e?(e.css!==r.css||e.media!==r.media||e.sourceMap!==r.sourceMap||e.supports!==r.supports||e.layer!==r.layer)&&o.update(r=e):o.remove()}}(u,t);t.byIndex=i,e.splice(i,0,{identifier:p,updater:b,references:1})}n.push(p)}return n}r.exports=function(r,a){var n=t(r=r||[],a=a||{});return function(r){r=r||[];for(var i=0;i<n.length;i++){var s=o(n[i]);e[s].references--}for(var c=t(r,a),l=0;l<n.length;l++){var p=o(n[l]);0===e[p].references&&(e[p].updater(),e.splice(p,1))}n=c}}},659(r){var e={};r.exports=function(r,o){var t=function(r){if(void 0===e[r]){var o=document.querySelector(r);if(window.HTMLIFrameElement&&o instanceof window.HTMLIFrameElement)try{o=o.contentDocument.head}catch(r){o=null}e[r]=o}return e[r]}(r);if(!t)throw Error("Couldn't find a style target. This probably means that the value for the 'insert' parameter is invalid.");t.appendChild(o)}},540(r){r.exports=function(r){var e=document.createElement("style");return r.setAttributes(e,r.attributes),r.insert(e,r.options),e}},56(r,e,o){r.exports=function(r){var e=o.nc;e&&r.setAttribute("nonce",e)}},206(r){r.exports=function(r){if("u"<typeof document)return{update:function(){},remove:function(){}};var e=r.insertStyleElement(r);return{update:function(o){var t,a,n;t="",o.supports&&(t+="@supports (".concat(o.supports,") {")),o.media&&(t+="@media ".concat(o.media," {")),(a=void 0!==o.layer)&&(t+="@layer".concat(o.layer.length>0?" ".concat(o.layer):""," {")),t+=o.css,a&&(t+="}"),o.media&&(t+="}"),o.supports&&(t+="}"),(n=o.sourceMap)&&"u">typeof btoa&&(t+="\n/*# sourceMappingURL=data:application/json;base64,".concat(btoa(unescape(encodeURIComponent(JSON.stringify(n))))," */")),r.styleTagTransform(t,e,r.options)},remove:function(){var r;null===(r=e).parentNode||r.parentNode.removeChild(r)}}}},113(r){r.exports=function(r,e){if(e.styleSheet)e.styleSheet.cssText=r;else{for(;e.firstChild;)e.removeChild(e.firstChild);e.appendChild(document.createTextNode(r))}}},959(r,e,o){var t=o(72),a=o.n(t),n=o(206),i=o.n(n),s=o(659),c=o.n(s),l=o(56),p=o.n(l),d=o(540),u=o.n(d),b=o(113),f=o.n(b),v=o(646),m={};m.styleTagTransform=f(),m.setAttributes=p(),m.insert=c().bind(null,"head"),m.domAPI=i(),m.insertStyleElement=u(),a()(v.A,m),v.A&&v.A.locals&&v.A.locals}}]);